import Foundation
import Kiln
import KilnModels
import Testing

/// The compiler's frozen boundary: where it lies, when it may be cached, and that a head trained
/// from cached boundary values takes the same steps as the whole frozen model.
struct FrozenBoundaryTests {
    let input: Shape = [4, 3, 32, 32]

    func configuration(trainOnly: [String], batchNorm: FrozenBatchNorm = .runningStatistics) -> TrainStep.Configuration {
        TrainStep.Configuration(
            optimizer: .sgd(.init(learningRate: 0.05, momentum: 0.9)), trainOnly: trainOnly, frozenBatchNorm: batchNorm, seed: 1)
    }

    func images(seed: UInt64) -> Tensor {
        let x = Tensor(zeros: input)
        var state = seed
        for i in 0..<x.count {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            x.floats[i] = Float(state >> 40) / Float(1 << 24) * 2 - 1
        }
        return x
    }

    @Test func theBoundaryOfAFrozenResNetIsItsPooledFeatures() throws {
        let model = ResNet18(classes: 5, width: 8)
        let boundary = try Compiler.frozenBoundary(model, input: input, configuration(trainOnly: ["fc"]))
        #expect(boundary.values == ["flatten"])
        #expect(boundary.sampleShapes == [[64]])
        #expect(boundary.isCacheable)
        #expect(boundary.prefix.contains("layer4.1.relu_1") && !boundary.prefix.contains("fc"))
        #expect(boundary.prefixState.contains("conv1.weight") && boundary.prefixState.contains("bn1.running_var"))
        #expect(!boundary.prefixState.contains("fc.weight"))
        // Training layer4 too moves the boundary to layer3's output.
        let deeper = try Compiler.frozenBoundary(model, input: input, configuration(trainOnly: ["layer4", "fc"]))
        #expect(deeper.values == ["layer3.1.relu_1"])
    }

    @Test func batchStatisticsOrDropoutInThePrefixForbidCaching() throws {
        let batchStats = try Compiler.frozenBoundary(
            ResNet18(classes: 5, width: 8), input: input, configuration(trainOnly: ["fc"], batchNorm: .batchStatistics))
        #expect(!batchStats.isCacheable)
        #expect(batchStats.obstacle == "bn1")
        let dropout = Sequential {
            Conv2d(3, 4, kernel: 3, padding: 1).named("conv")
            Dropout(0.5).named("drop")
            AdaptiveAvgPool2d(1).named("pool")
            Flatten().named("flatten")
            Linear(4, 5).named("fc")
        }
        let withDropout = try Compiler.frozenBoundary(dropout, input: input, configuration(trainOnly: ["fc"]))
        #expect(withDropout.obstacle == "drop")
        let nothingFrozen = try Compiler.frozenBoundary(dropout, input: input, configuration(trainOnly: ["conv", "fc"]))
        #expect(nothingFrozen.values == ["input"] && !nothingFrozen.isCacheable)
    }

    /// Three SGD steps of the whole frozen model and of its head fed with extracted features:
    /// the same losses, logits and classifier weights.
    @Test func aHeadTrainedOnExtractedFeaturesTakesTheSameSteps() throws {
        let model = ResNet18(classes: 5, width: 8)
        let config = configuration(trainOnly: ["fc"])
        let boundary = try Compiler.frozenBoundary(model, input: input, config)
        let whole = try TrainStep(model: model, inputShape: input, configuration: config)
        let shared = ParameterStore()
        for key in whole.parameters.keys { shared.set(key, whole.parameters[key]!.clone()) }
        var headConfig = config
        headConfig.startAt = boundary.values
        let head = try TrainStep(model: model, inputShape: input, parameters: shared, configuration: headConfig)
        #expect(head.graph.inputs.map(\.name).sorted() == ["flatten", "labels"])
        #expect(!head.graph.nodes.contains { $0.name.hasPrefix("layer") }, "the head runs no backbone node")
        let extractor = try Executor(
            graph: Compiler.features(model, input: input, values: boundary.values), parameters: shared, mode: .inference)
        for step in 0..<3 {
            let x = images(seed: UInt64(step)), labels = Tensor(shape: [4], int64s: [0, 1, 2, Int64(step)])
            let a = try whole.run(images: x, labels: labels)
            let features = try extractor.run(["input": x]).mapValues { $0.clone() }
            let b = try head.run(features: features, labels: labels)
            #expect(abs(a.loss - b.loss) <= 1e-6 * abs(a.loss), "step \(step): loss \(a.loss) vs \(b.loss)")
            #expect(relativeError(b.logits.scalars, a.logits.scalars.map(Double.init)) < 1e-6)
        }
        #expect(relativeError(shared["fc.weight"]!.scalars, whole.parameters["fc.weight"]!.scalars.map(Double.init)) < 1e-6)
        let x = images(seed: 9)
        let evalWhole = try whole.evaluate(images: x).scalars
        let evalHead = try head.evaluate(features: extractor.run(["input": x]).mapValues { $0.clone() }).scalars
        #expect(relativeError(evalHead, evalWhole.map(Double.init)) < 1e-6)
    }

    /// A step told its frozen weights stay constant folds and transforms the frozen convs once
    /// (their 64-channel 3×3 convs take Winograd at this size; layer2's and layer3's small maps
    /// only with filters prepared once) and takes the same steps, to float rounding, as one
    /// deriving them every step, with layer4 frozen or training. A frozen weight changed after
    /// the first steps is (by contract) not seen: the derived filters are kept.
    @Test(arguments: [["fc"], ["layer4", "fc"]])
    func constantFrozenWeightsTakeTheSameSteps(_ trainOnly: [String]) throws {
        let shape: Shape = [4, 3, 64, 64]
        func losses(constant: Bool) throws -> [Float] {
            var config = configuration(trainOnly: trainOnly)
            config.frozenWeightsConstant = constant
            let step = try TrainStep(model: ResNet18(classes: 5, width: 64), inputShape: shape, configuration: config)
            var losses: [Float] = []
            for i in 0..<4 {
                if i == 3 {
                    let gamma = step.parameters["layer1.0.bn1.weight"]!
                    for j in 0..<gamma.count { gamma.floats[j] *= 3 }
                }
                let x = Tensor(zeros: shape)
                for j in 0..<x.count { x.floats[j] = Float((j * 7919 + i * 104_729) % 1000) / 500 - 1 }
                losses.append(try step.run(images: x, labels: Tensor(shape: [4], int64s: [0, 1, 2, Int64(i % 3)])).loss)
            }
            return losses
        }
        let (perStep, kept) = (try losses(constant: false), try losses(constant: true))
        #expect(relativeError(Array(kept.prefix(3)), perStep.prefix(3).map(Double.init)) < 1e-5)
        #expect(abs(perStep[3] - kept[3]) > 1e-3 * abs(perStep[3]))
    }
}
