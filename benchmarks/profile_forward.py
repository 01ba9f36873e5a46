"""Where one small forward's time goes: pyinstrument over 40 forwards of a short chunk after a long prefix.

    python benchmarks/profile_forward.py [--chunk 8] [--prefix 1400] [--dtype bfloat16] [--model gemma-3-270m]

The prefix-sharing scorer makes about 1.5 forwards per labelled example per evaluation, most of them short
(a demonstration and a query after a long shared prefix); this shows what such a forward costs and why.
"""

from __future__ import annotations

import argparse

import torch
from pyinstrument import Profiler

from icm_plugin.scoring.models import load_model
from icm_plugin.scoring.prefix import branch_cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--prefix", type=int, default=1400)
    ap.add_argument("--repeats", type=int, default=40)
    args = ap.parse_args()
    model, _ = load_model(args.model, dtype=args.dtype)
    decoder = model.get_decoder()
    with torch.inference_mode():
        cache = decoder(input_ids=torch.arange(1000, 1000 + args.prefix).unsqueeze(0), use_cache=True).past_key_values
        chunk = torch.arange(2000, 2000 + args.chunk).unsqueeze(0)
        decoder(input_ids=chunk, past_key_values=branch_cache(cache), use_cache=True)  # warm-up
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(args.repeats):
            decoder(input_ids=chunk, past_key_values=branch_cache(cache), use_cache=True)
        profiler.stop()
    total = profiler.last_session.duration
    print(f"{args.model} {args.dtype}: {args.repeats} forwards of {args.chunk} tokens after {args.prefix}: "
          f"{1000 * total / args.repeats:.1f} ms each")
    print(profiler.output_text(unicode=False, color=False, show_all=True))


if __name__ == "__main__":
    main()
