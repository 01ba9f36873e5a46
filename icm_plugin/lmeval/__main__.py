import sys

from icm_plugin.lmeval.cli import main

sys.exit(main())
