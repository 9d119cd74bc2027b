"""Lens-Nano's frozen components, trained from nothing on the shapes world through the full model's classes.

- `lens.nano.corpus`: captions, short prompts, Harmony-wrapped LM texts and images from `lens.world`.
- `lens.nano.tokenizer`: a byte-level BPE trained on that corpus, carrying the Harmony special tokens.
- `lens.nano.lm`: a 4-layer GPT-OSS (`LensGptOssEncoder`) pre-trained as a causal LM on the captions.
- `lens.nano.vae`: a small `AutoencoderKLFlux2` (32 latent channels, 8x down) trained on world images.
- `lens.nano.latent_stats`: the VAE's BatchNorm statistics from its training latents, PSNR, pictures.
- `lens.nano.loop`: the shared training loop (warm-up + cosine LR, step or time budget, loss log).
- `lens.nano.build`: `build_components`, all of the above into `tokenizer/`, `text_encoder/`, `vae/`.
- `lens.nano.recipe` / `lens.nano.bundle`: `lens nano build`, and the frozen and bundled folders.

The probes and experiments run on these models live in `lens.research`.

Submodules are imported explicitly so that `import lens.nano` stays free of torch.
"""
