import Foundation
import Kiln
import KilnModels
import Testing

/// Training against PyTorch (float64 references from Tests/Fixtures/generate.py): the loss and
/// every parameter gradient of ResNet-18 (width 8: the same graph at 1/8 of the channels, so the
/// fixture stays small) and of the basic CNN, BN in training mode; and the parameters after two
/// steps of SGD (momentum, weight decay, nesterov), Adam and AdamW.
struct TrainingParityTests {
    static let gradientCases: [(String, @Sendable () -> Sequential)] = [
        ("resnet18-w8-grad", { ResNet18(classes: 21, width: 8) }),
        ("basic-cnn-grad", { BasicCNN(classes: 21) }),
    ]

    @Test(arguments: [0, 1], [true, false])
    func lossAndEveryGradientMatchPyTorch(_ index: Int, fuse: Bool) throws {
        let (fixture, makeModel) = Self.gradientCases[index]
        let input = try NPY.read(FixtureWeights.url(fixture, "input.npy"))
        let labels = try NPY.read(FixtureWeights.url(fixture, "labels.npy"))
        let graph = try Compiler.gradients(makeModel(), input: input.shape, fuse: fuse)
        let keep = Set(graph.gradients.values.map { graph[$0].name })
        let executor = try Executor(graph: graph, parameters: FixtureWeights.store(for: graph), mode: .training, keep: keep)
        let outputs = try executor.run(["input": input, "labels": labels])

        let loss = try NPY.readDoubles(FixtureWeights.url(fixture, "loss.npy")).values[0]
        #expect(abs(Double(outputs["loss"]!.scalars[0]) - loss) / abs(loss) < 1e-5)
        #expect(graph.gradients.count == graph.parameters.count)
        var worst = (0.0, "")
        for parameter in graph.parameters {
            let reference = try NPY.read(FixtureWeights.url(fixture, "grad_\(parameter.name).npy"))
            let ours = try executor.tensor(named: graph[graph.gradients[parameter.name]!].name)
            #expect(ours.shape == reference.shape, "\(parameter.name)")
            let error = relativeError(ours.scalars, reference.scalars.map(Double.init))
            if error > worst.0 { worst = (error, parameter.name) }
            #expect(error < 1e-4, "\(parameter.name): relative error \(error)")
        }
        print(
            "\(fixture) \(fuse ? "fused" : "unfused"): \(graph.parameters.count) gradients, worst relative error \(worst.0) at \(worst.1)")
    }

    static let optimizers: [(String, Optimizer)] = [
        ("sgd", .sgd(.init(learningRate: 0.05, momentum: 0.9, weightDecay: 5e-4))),
        ("sgd-nesterov", .sgd(.init(learningRate: 0.05, momentum: 0.9, nesterov: true))),
        ("adam", .adam(.init(learningRate: 1e-3))),
        ("adamw", .adamW(learningRate: 1e-3, weightDecay: 0.1)),
    ]

    @Test(arguments: 0..<4)
    func twoOptimizerStepsMatchTorchOptim(_ index: Int) throws {
        let (name, optimizer) = Self.optimizers[index]
        let input = try NPY.read(FixtureWeights.url("optimizers", "input.npy"))
        let labels = try NPY.read(FixtureWeights.url("optimizers", "labels.npy"))
        let model = BasicCNN(classes: 21)
        let store = FixtureWeights.store(for: try Graph.trace(model, input: input.shape))
        let before = ["blocks.0.conv.weight", "blocks.3.bn.weight", "blocks.3.bn.bias", "fc.weight", "fc.bias"]
            .map { ($0, store[$0]!.clone()) }
        let step = try TrainStep(model: model, inputShape: input.shape, parameters: store, optimizer: optimizer)
        try step.run(images: input, labels: labels)
        try step.run(images: input, labels: labels)
        for (key, old) in before {
            let expected = try NPY.readDoubles(FixtureWeights.url("optimizers", "\(name)_\(key).npy")).values
            let ours = store[key]!.scalars
            // Compare the change each optimizer made: float32 vs float64 over two steps.
            let ourDelta = zip(ours, old.scalars).map { $0 - $1 }
            let refDelta = zip(expected, old.scalars).map { $0 - Double($1) }
            let error = relativeError(ourDelta, refDelta)
            #expect(error < 1e-3, "\(name) \(key): update relative error \(error)")
            #expect(refDelta.contains { $0 != 0 })
        }
    }
}
