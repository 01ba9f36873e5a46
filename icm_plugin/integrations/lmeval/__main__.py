import sys

from icm_plugin.integrations.lmeval.cli import main

sys.exit(main())
