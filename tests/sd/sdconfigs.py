"""Stable Diffusion configurations for the parity tests, written out from the
published diffusers configs (runwayml/stable-diffusion-v1-5 and
stabilityai/stable-diffusion-2-1), plus a tiny SD-1-like configuration.
Kept independent of dinv's own presets on purpose: test_model_cli checks that
`dinv model init --preset` writes the same architectures."""

SD_DOWN = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
SD_UP = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]

SD15_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": SD_DOWN,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": SD_UP,
}

SD15_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

SD21_UNET = dict(
    SD15_UNET,
    attention_head_dim=[5, 10, 20, 20],
    cross_attention_dim=1024,
    dual_cross_attention=False,
    num_class_embeds=None,
    only_cross_attention=False,
    sample_size=96,
    upcast_attention=True,
    use_linear_projection=True,
)

SD21_VAE = dict(SD15_VAE, sample_size=768)

# SD-1-like, small: two levels, both block kinds, mid block, odd head count.
TINY_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 2,
    "block_out_channels": [32, 64],
    "cross_attention_dim": 32,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
}

# A second tiny config exercising the SD 2.x options and more structure:
# linear projection, per-block head counts, upcast, two layers, three levels,
# flip_sin_to_cos off and a frequency shift.
TINY2_UNET = {
    "act_fn": "silu",
    "attention_head_dim": [2, 4, 4],
    "block_out_channels": [32, 64, 64],
    "cross_attention_dim": 48,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 2,
    "norm_num_groups": 16,
    "sample_size": 16,
    "use_linear_projection": True,
    "upcast_attention": True,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "in_channels": 4,
    "out_channels": 4,
}

TINY_VAE = {
    "act_fn": "silu",
    "block_out_channels": [32, 64],
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "out_channels": 3,
    "sample_size": 32,
    "scaling_factor": 0.18215,
}

TINY2_VAE = dict(TINY_VAE, block_out_channels=[16, 32, 32], down_block_types=["DownEncoderBlock2D"] * 3,
                 up_block_types=["UpDecoderBlock2D"] * 3, layers_per_block=2, latent_channels=3,
                 scaling_factor=0.13025)

# name -> (unet config, vae config, latent size for UNet cases, image size for VAE cases, tokens)
MODELS = {
    "tiny": (TINY_UNET, TINY_VAE, 16, 32, 7),
    "tiny2": (TINY2_UNET, TINY2_VAE, 12, 32, 9),
    "sd15": (SD15_UNET, SD15_VAE, 8, 64, 77),
    "sd21": (SD21_UNET, SD21_VAE, 8, 64, 77),
}
