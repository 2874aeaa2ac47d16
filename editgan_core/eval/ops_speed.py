"""Generator speed: native ops vs the reference formulation, on the same weights.

    python -m editgan_core.eval.ops_speed                    # demo, 256 and 1024 config-f on CPU
    python -m editgan_core.eval.ops_speed --configs 1024 --device cuda --impls native cuda

Prints forward and forward+backward-to-W+ time per image for each ops implementation and the
ratio to ``ref`` (zero insertion + pad + conv2d on an (N*C, 1, H, W) view).
"""

from __future__ import annotations

import torch

from editgan_core.cli_common import command_parser, parse_command
from editgan_core.eval.timing import median_time
from editgan_core.models.stylegan2 import Generator
from editgan_core.ops import use_impl

DEMO_CHANNELS = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32}
CONFIGS = {
    "demo64": dict(size=64, style_dim=128, n_mlp=4, channels=DEMO_CHANNELS),
    "256": dict(size=256, style_dim=512, n_mlp=8),
    "512": dict(size=512, style_dim=512, n_mlp=8),
    "1024": dict(size=1024, style_dim=512, n_mlp=8),
}


def bench_config(name: str, device: torch.device, impls: list[str], repeats: int, batch: int) -> list[dict]:
    torch.manual_seed(0)
    g = Generator(**CONFIGS[name]).to(device).eval().requires_grad_(False)
    latent = g.w_to_wplus(g.mean_latent(256)).repeat(batch, 1, 1).clone()
    noise = g.stored_noise()

    def forward():
        with torch.no_grad():
            g.synthesis(latent, noise=noise)

    def forward_backward():
        w = latent.clone().requires_grad_(True)
        g.synthesis(w, noise=noise).image.square().mean().backward()

    rows = []
    for impl in impls:
        with use_impl(impl):
            rows.append({
                "config": name, "impl": impl,
                "forward": median_time(forward, repeats, device=device) / batch,
                "forward_backward": median_time(forward_backward, repeats, device=device) / batch,
            })
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = command_parser(__doc__, device=True, device_default="cpu")
    parser.add_argument("--configs", nargs="+", default=["demo64", "256", "1024"], choices=list(CONFIGS))
    parser.add_argument("--impls", nargs="+", default=["ref", "native"], choices=["ref", "native", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    args = parse_command(parser, argv)
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} repeats={args.repeats}")
    print(f"{'config':<8} {'impl':<7} {'forward ms':>11} {'fwd+bwd ms':>11} {'fwd ratio':>10} {'f+b ratio':>10}")
    for name in args.configs:
        rows = bench_config(name, device, args.impls, args.repeats, args.batch)
        base = rows[0]
        for r in rows:
            print(f"{r['config']:<8} {r['impl']:<7} {r['forward'] * 1e3:11.1f} {r['forward_backward'] * 1e3:11.1f} "
                  f"{r['forward'] / base['forward']:10.2f} {r['forward_backward'] / base['forward_backward']:10.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
