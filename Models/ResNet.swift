import Kiln

/// torchvision's ResNet-18: same layers, same order, same state_dict keys
/// (`conv1.weight`, `layer2.0.downsample.0.weight`, `fc.bias`, …), same default initialisation.
/// `width` scales the base channel count (64 in torchvision); tests use narrow copies.
public func ResNet18(classes: Int = 1000, width: Int = 64) -> Sequential {
    let stages = [width, width * 2, width * 4, width * 8]
    return Sequential {
        Conv2d(3, width, kernel: 7, stride: 2, padding: 3, bias: false).named("conv1")
        BatchNorm2d(width).named("bn1")
        ReLU().named("relu")
        MaxPool2d(3, stride: 2, padding: 1).named("maxpool")
        for (stage, channels) in stages.enumerated() {
            let inChannels = stage == 0 ? width : stages[stage - 1]
            let stride = stage == 0 ? 1 : 2
            Sequential {
                BasicBlock(inChannels, channels, stride: stride)
                BasicBlock(channels, channels, stride: 1)
            }.named("layer\(stage + 1)")
        }
        AdaptiveAvgPool2d(1).named("avgpool")
        Flatten().named("flatten")
        Linear(stages[3], classes).named("fc")
    }
}

/// Two 3×3 convs with a residual connection; a 1×1 strided conv + BN ("downsample") when the
/// shape changes. The block's `relu` module is applied twice, as in torchvision.
public func BasicBlock(_ inChannels: Int, _ channels: Int, stride: Int) -> Residual {
    Residual {
        Conv2d(inChannels, channels, kernel: 3, stride: stride, padding: 1, bias: false).named("conv1")
        BatchNorm2d(channels).named("bn1")
        ReLU().named("relu")
        Conv2d(channels, channels, kernel: 3, padding: 1, bias: false).named("conv2")
        BatchNorm2d(channels).named("bn2")
    } shortcut: {
        if stride != 1 || inChannels != channels {
            Sequential {
                Conv2d(inChannels, channels, kernel: 1, stride: stride, bias: false)
                BatchNorm2d(channels)
            }.named("downsample")
        }
    } output: {
        ReLU().named("relu")
    }
}
