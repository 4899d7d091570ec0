import Kiln

/// The Part 1/2 baseline of the land-use course: four blocks of
/// [conv 3×3 (pad 1, no bias) → BN → ReLU → max pool 2×2] with 32/64/128/256 channels,
/// global average pooling and a linear classifier. Keys: `blocks.{i}.conv.weight`,
/// `blocks.{i}.bn.*`, `fc.weight`, `fc.bias`.
public func BasicCNN(classes: Int = 21, channels: [Int] = [32, 64, 128, 256]) -> Sequential {
    let widths = [3] + channels
    return Sequential {
        Sequential {
            for i in channels.indices {
                Sequential {
                    Conv2d(widths[i], widths[i + 1], kernel: 3, padding: 1, bias: false).named("conv")
                    BatchNorm2d(widths[i + 1]).named("bn")
                    ReLU().named("relu")
                    MaxPool2d(2).named("pool")
                }
            }
        }.named("blocks")
        AdaptiveAvgPool2d(1).named("avgpool")
        Flatten().named("flatten")
        Linear(widths.last!, classes).named("fc")
    }
}
