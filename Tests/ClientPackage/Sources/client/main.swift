import Foundation
import Kiln

// A network of the client's own, in Kiln's DSL: two conv blocks and a classifier.
func SmallNet(classes: Int) -> some Layer {
    Sequential {
        Conv2d(3, 8, kernel: 3, padding: 1, bias: false).named("conv1")
        BatchNorm2d(8).named("bn1")
        ReLU().named("relu1")
        MaxPool2d(2).named("pool")
        Conv2d(8, 16, kernel: 3, padding: 1).named("conv2")
        ReLU().named("relu2")
        AdaptiveAvgPool2d(1).named("avgpool")
        Flatten().named("flatten")
        Linear(16, classes).named("fc")
    }
}

// A learnable task: the label is which channel is brighter.
let (batch, side, classes) = (16, 16, 3)
let images = Tensor(zeros: [batch, 3, side, side]), labels = Tensor(zeros: [batch], dtype: .int64)
for i in 0..<batch {
    labels.int64s[i] = Int64(i % classes)
    for c in 0..<3 {
        for p in 0..<(side * side) {
            images.floats[(i * 3 + c) * side * side + p] = Float((p * 31 + i * 7) % 17) / 17 + (c == i % classes ? 1 : 0)
        }
    }
}

let step = try TrainStep(
    model: SmallNet(classes: classes), inputShape: images.shape, optimizer: .sgd(.init(learningRate: 0.1, momentum: 0.9)))
var losses: [Float] = []
for _ in 0..<10 { losses.append(try step.run(images: images, labels: labels).loss) }
print("client: kernels \(InstructionSet.active), losses \(losses.map { String(format: "%.4f", $0) }.joined(separator: " "))")
guard losses.allSatisfy(\.isFinite), losses.last! < 0.5 * losses.first! else {
    print("client: training did not converge")
    exit(1)
}
