"""The prepared one-shot GPU run (issue 17): build and test the CUDA ops, measure, train the 128-px GAN.

A GPU machine is lent only now and then, for minutes, with a bare image, no network, and a cap on what
travels to it and back. So everything it should do is one command, tested here on a CPU in
``--dry-run`` mode: ``python -m editgan_core.gpu_run prepare`` (here) copies the fixtures into the
carried folder and prints the exact device call; ``scripts/gpu_run.sh`` (there) runs the phases, each in
its own process under its own time budget, writing to ``$OUT`` as it goes. docs/gpu.md has the details.
"""
