import Foundation
import Kiln
import KilnModels
import Testing

struct TrainStepTests {
    func batch(_ n: Int, side: Int, classes: Int, seed: UInt64) -> (Tensor, Tensor) {
        let x = Tensor(zeros: [n, 3, side, side])
        var state = seed
        for i in 0..<x.count {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            x.floats[i] = Float(state >> 40) / Float(1 << 24) - 0.5
        }
        // Make the label visible in the data: class k brightens channel k % 3.
        let labels = Tensor(shape: [n], int64s: (0..<n).map { Int64($0 % classes) })
        for i in 0..<n {
            let c = Int(labels.int64s[i]) % 3
            for p in 0..<(side * side) { x.floats[(i * 3 + c) * side * side + p] += Float(labels.int64s[i]) * 0.5 }
        }
        return (x, labels)
    }

    @Test func frozenBackboneStepTouchesOnlyTheClassifier() throws {
        let model = ResNet18(classes: 5, width: 8)
        let (x, y) = batch(4, side: 32, classes: 5, seed: 1)
        let step = try TrainStep(
            model: model, inputShape: x.shape,
            configuration: .init(
                optimizer: .sgd(.init(learningRate: 0.1, momentum: 0.9)), trainOnly: ["fc"]))
        let snapshot = Dictionary(uniqueKeysWithValues: step.parameters.keys.map { ($0, step.parameters[$0]!.clone()) })
        try step.run(images: x, labels: y)
        try step.run(images: x, labels: y)
        for key in step.parameters.keys where !key.hasPrefix("optimizer.") {
            let same =
                Data(bytes: snapshot[key]!.data, count: snapshot[key]!.byteCount)
                == Data(bytes: step.parameters[key]!.data, count: step.parameters[key]!.byteCount)
            if key.hasPrefix("fc.") {
                #expect(!same, "\(key) should train")
            } else {
                #expect(same, "\(key) is frozen (BN statistics included) but changed")
            }
        }
    }

    @Test func frozenGraphHasNoBackwardNodeOutsideTheClassifier() throws {
        let config = TrainStep.Configuration(optimizer: .sgd(.init(learningRate: 0.1)), trainOnly: ["fc"])
        let frozen = try TrainStep.compile(ResNet18(classes: 21), input: [2, 3, 64, 64], config)
        let backward = frozen.nodes.filter { $0.phase == .backward }
        #expect(!backward.isEmpty)
        for node in backward {
            #expect(node.name.hasPrefix("fc.") || node.name.hasPrefix("loss."), "unexpected backward node \(node.name)")
        }
        #expect(frozen.nodes.filter { $0.phase == .update }.map(\.name) == ["fc.weight.update", "fc.bias.update"])
        // Every BN in the frozen backbone runs on running statistics (the unfused graph keeps
        // them as BatchNorm nodes; the fused one folds them into the convs).
        var unfusedConfig = config
        unfusedConfig.fuse = false
        let unfused = try TrainStep.compile(ResNet18(classes: 21), input: [2, 3, 64, 64], unfusedConfig)
        let batchNorms = unfused.nodes.compactMap { $0.op as? BatchNormOp }
        #expect(batchNorms.count == 20)
        #expect(batchNorms.allSatisfy { $0.usesRunningStatistics })
        #expect(!frozen.nodes.contains { $0.op is BatchNormOp })
        let full = try TrainStep.compile(ResNet18(classes: 21), input: [2, 3, 64, 64], .init(optimizer: .sgd(.init(learningRate: 0.1))))
        let fullBackward = full.nodes.filter { $0.phase == .backward }.count
        print("resnet18 backward nodes: fine-tune all \(fullBackward), frozen backbone \(backward.count)")
        #expect(fullBackward > 10 * backward.count)
        #expect(full.nodes.filter { $0.phase == .update }.count == 62)
    }

    @Test func pytorchStyleFrozenBatchNormStillUpdatesRunningStatistics() throws {
        let (x, y) = batch(4, side: 32, classes: 5, seed: 2)
        let step = try TrainStep(
            model: ResNet18(classes: 5, width: 8), inputShape: x.shape,
            configuration: .init(
                optimizer: .sgd(.init(learningRate: 0.1)), trainOnly: ["fc"], frozenBatchNorm: .batchStatistics))
        let before = step.parameters["bn1.running_mean"]!.scalars
        try step.run(images: x, labels: y)
        #expect(step.parameters["bn1.running_mean"]!.scalars != before)
        #expect(step.parameters["conv1.weight"] != nil)
        #expect(step.parameters["bn1.num_batches_tracked"]!.int64Scalars == [1])
    }

    @Test func freezeByPrefixAndParameterList() throws {
        var graph = try Graph.trace(ResNet18(classes: 21), input: [1, 3, 64, 64])
        graph.freeze("layer1", "conv1")
        let list = graph.parameterList
        #expect(list.count == 62)
        #expect(list.first { $0.name == "layer1.0.conv1.weight" }!.trainable == false)
        #expect(list.first { $0.name == "conv1.weight" }!.trainable == false)
        #expect(list.first { $0.name == "bn1.weight" }!.trainable == true)
        #expect(list.first { $0.name == "layer2.0.conv1.weight" }!.trainable == true)
        graph.unfreezeAll()
        graph.freeze(allExcept: ["fc"])
        #expect(graph.parameterList.filter(\.trainable).map(\.name) == ["fc.weight", "fc.bias"])
        #expect(GraphSummary(graph).trainableParams == 512 * 21 + 21)
    }

    @Test func basicCNNLearnsATinySyntheticBatch() throws {
        let (x, y) = batch(8, side: 32, classes: 4, seed: 3)
        let step = try TrainStep(
            model: BasicCNN(classes: 4), inputShape: x.shape,
            optimizer: .sgd(.init(learningRate: 0.05, momentum: 0.9)))
        var losses: [Float] = []
        for _ in 0..<12 { losses.append(try step.run(images: x, labels: y).loss) }
        #expect(losses.last! < 0.5 * losses.first!, "losses \(losses)")
        let logits = try step.evaluate(images: x)
        #expect(logits.shape == [8, 4])
    }

    @Test func sameSeedSameThreadsIsBitwiseReproducible() throws {
        let (x, y) = batch(4, side: 32, classes: 4, seed: 4)
        func train() throws -> [Float] {
            let step = try TrainStep(
                model: BasicCNN(classes: 4), inputShape: x.shape,
                configuration: .init(
                    optimizer: .adam(.init(learningRate: 1e-3)), seed: 9))
            for _ in 0..<3 { try step.run(images: x, labels: y) }
            return step.parameters["blocks.0.conv.weight"]!.scalars
        }
        #expect(try train() == train())
    }

    @Test func schedules() {
        #expect(LRSchedule.step(stepSize: 2, gamma: 0.1).learningRate(base: 1, epoch: 3) == 0.1)
        #expect(abs(LRSchedule.cosine(tMax: 10, etaMin: 0).learningRate(base: 1, epoch: 5) - 0.5) < 1e-6)
        #expect(LRSchedule.cosine(tMax: 10, etaMin: 0.01).learningRate(base: 1, epoch: 10) == 0.01)
    }
}
