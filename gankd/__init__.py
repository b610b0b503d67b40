"""gankd: GAN knowledge distillation for SSD object detection, on GluonCV and MXNet."""
