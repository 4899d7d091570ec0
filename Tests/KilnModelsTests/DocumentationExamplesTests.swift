import Foundation
import Kiln
import KilnData
import Testing

/// The DocC articles' examples (Sources/Kiln/Kiln.docc), compiled and run: a network of its own,
/// a few training steps, frozen training, saving and loading.
struct DocumentationExamplesTests {
    func TinyNet(classes: Int) -> some Layer {
        Sequential {
            Sequential {
                for (cin, cout) in [(3, 16), (16, 32)] {
                    Sequential {
                        Conv2d(cin, cout, kernel: 3, padding: 1, bias: false).named("conv")
                        BatchNorm2d(cout).named("bn")
                        ReLU().named("relu")
                        MaxPool2d(2).named("pool")
                    }
                }
            }.named("blocks")
            AdaptiveAvgPool2d(1).named("avgpool")
            Flatten().named("flatten")
            Linear(32, classes).named("fc")
        }
    }

    @Test func definingTrainingSavingAndLoadingATinyNet() throws {
        let graph = try Graph.trace(TinyNet(classes: 10), input: [8, 3, 32, 32])
        #expect(graph.stateValues.map(\.name).contains("blocks.1.bn.running_var"))
        let store = ParameterStore(graph: graph, seed: 0)
        let executor = try Executor(graph: try Compiler.inference(TinyNet(classes: 10), input: [8, 3, 32, 32]), parameters: store)
        #expect(try executor.run(["input": Tensor(zeros: [8, 3, 32, 32])])["logits"]!.shape == [8, 10])

        // A learnable task: the label is the brightest of 10 input patterns.
        var rng = SplitMix(seed: 1)
        let images = Tensor(zeros: [32, 3, 32, 32]), labels = Tensor(zeros: [32], dtype: .int64)
        for i in 0..<32 {
            let label = i % 10
            labels.int64s[i] = Int64(label)
            for j in 0..<(3 * 32 * 32) { images.floats[i * 3072 + j] = Float(rng.next() % 100) / 100 + (j % 10 == label ? 1 : 0) }
        }
        let step = try TrainStep(
            model: TinyNet(classes: 10), inputShape: [32, 3, 32, 32],
            optimizer: .sgd(.init(learningRate: 0.05, momentum: 0.9, weightDecay: 1e-4)))
        let losses = try (0..<8).map { _ in try step.run(images: images, labels: labels).loss }
        #expect(losses.allSatisfy(\.isFinite) && losses.last! < losses.first!, "\(losses)")

        let frozen = try TrainStep(
            model: TinyNet(classes: 10), inputShape: [32, 3, 32, 32],
            configuration: .init(optimizer: .sgd(.init(learningRate: 0.05)), trainOnly: ["fc"]))
        let before = frozen.parameters["blocks.0.conv.weight"]!.scalars
        try frozen.run(images: images, labels: labels)
        #expect(frozen.parameters["blocks.0.conv.weight"]!.scalars == before)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-docs-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("tinynet.safetensors")
        try step.parameters.save(to: url, for: graph, metadata: ["epoch": "1"])
        let loaded = try ParameterStore(contentsOf: url, for: graph)
        #expect(loaded["fc.weight"]!.scalars == step.parameters["fc.weight"]!.scalars)
    }
}
