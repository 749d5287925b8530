import torch
import torchvision

from ood_helpers.networks import AutoEncoder, DifferenceClassifier, Encoder, count_parameters, layer_table


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


def test_linear_path_is_optional_and_off_by_default():
    plain = AutoEncoder(in_channels=3, width=4, latent_dim=8, stem="imagenet")
    assert not any("linear" in key for key in plain.state_dict())   # files saved before it still load
    shortcut = AutoEncoder(in_channels=3, width=4, latent_dim=8, stem="imagenet", linear_path=True)
    keys = set(shortcut.state_dict())
    assert {"encoder.linear.weight", "decoder.linear.weight"} <= keys
    x = torch.rand(3, 3, 32, 32)
    reconstruction, z = shortcut(x)
    assert reconstruction.shape == x.shape and z.shape == (3, 8)
    assert 0 <= reconstruction.min() and reconstruction.max() <= 1
    torch.nn.functional.l1_loss(reconstruction, x).backward()
    assert shortcut.encoder.linear.weight.grad.abs().sum() > 0 and shortcut.decoder.linear.weight.grad.abs().sum() > 0


def test_linear_path_alone_can_copy_a_linear_code():
    # with the ResNet paths silenced, E and D are a linear autoencoder: z must carry the image
    torch.manual_seed(0)
    ae = AutoEncoder(in_channels=1, width=4, latent_dim=8, stem="imagenet", linear_path=True)
    with torch.no_grad():
        ae.encoder.fc.weight.zero_(), ae.encoder.fc.bias.zero_()
        ae.decoder.head.weight.zero_(), ae.decoder.head.bias.zero_()
    ae.eval()
    x = torch.rand(2, 1, 32, 32)
    z = ae.encoder(x)
    assert torch.allclose(z, ae.encoder.linear(x.flatten(1)), atol=1e-6)
    expected = torch.sigmoid(ae.decoder.linear(z)).view(2, 1, 32, 32)
    assert torch.allclose(ae.decoder(z), expected, atol=1e-6)
