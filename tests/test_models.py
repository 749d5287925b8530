import torch
import torchvision

from ood_helpers.models import AutoEncoder, DifferenceClassifier, Encoder, count_parameters, layer_table


def test_autoencoder_shapes_and_range():
    ae = AutoEncoder(in_channels=3, width=8, latent_dim=32, stem="imagenet")
    reconstruction, z = ae(torch.rand(5, 3, 32, 32))
    assert reconstruction.shape == (5, 3, 32, 32)
    assert z.shape == (5, 32)
    assert reconstruction.min() >= 0 and reconstruction.max() <= 1


def test_cifar_stem_keeps_shapes():
    ae = AutoEncoder(in_channels=1, width=4, latent_dim=8, stem="cifar")
    reconstruction, z = ae(torch.rand(2, 1, 32, 32))
    assert reconstruction.shape == (2, 1, 32, 32) and z.shape == (2, 8)


def test_l1_gradients_reach_the_encoder():
    ae = AutoEncoder(in_channels=1, width=4, latent_dim=8, stem="imagenet")
    x = torch.rand(4, 1, 32, 32)
    reconstruction, _ = ae(x)
    torch.nn.functional.l1_loss(reconstruction, x).backward()
    first_conv = ae.encoder.trunk.stem[0].weight.grad
    assert first_conv is not None and first_conv.abs().sum() > 0


def test_width_64_encoder_has_resnet18_parameter_count():
    # our trunk at width 64 with torchvision's stem is resnet18 without its final fc layer
    reference = torchvision.models.resnet18()
    reference_trunk = count_parameters(reference) - count_parameters(reference.fc)
    ours = Encoder(in_channels=3, width=64, latent_dim=10, stem="imagenet")
    assert count_parameters(ours.trunk) == reference_trunk


def test_latent_injection_changes_the_logit_and_the_ablation_ignores_z():
    torch.manual_seed(0)
    diff = torch.rand(3, 1, 32, 32)
    with_z = DifferenceClassifier(1, width=4, latent_dim=8, stem="imagenet", latent_input=True, inject_stage=3).eval()
    a, b = with_z(diff, torch.zeros(3, 8)), with_z(diff, torch.randn(3, 8) * 5)
    assert a.shape == (3,) and not torch.allclose(a, b)
    without = DifferenceClassifier(1, width=4, latent_dim=8, stem="imagenet", latent_input=False).eval()
    assert torch.allclose(without(diff, torch.zeros(3, 8)), without(diff, torch.randn(3, 8)))


def test_layer_table_lists_stem_and_four_stages():
    rows = layer_table(Encoder(3, width=64, latent_dim=10, stem="cifar"), in_channels=3)
    assert [name for name, _, _ in rows] == ["stem", "stage1", "stage2", "stage3", "stage4"]
    assert rows[-1][1] == "(512, 4, 4)"
