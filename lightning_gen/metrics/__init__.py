"""Sample-quality metrics: feature extractors, the real-feature cache, FID/KID/precision-recall and PSNR/SSIM."""
