import Foundation
@testable import Kiln
import KilnModels
import Testing

/// The fusion pass and the memory planner on the zoo: fused and unfused graphs compute the same
/// thing, every zoo plan verifies, and a broken plan does not.
struct CompilerTests {
    struct Case: CustomStringConvertible, Sendable {
        let name: String
        let model: @Sendable () -> Sequential
        let input: Shape
        var description: String { name }
    }

    static let cases: [Case] =
        [
            Case(name: "resnet18", model: { ResNet18(classes: 7, width: 8) }, input: [4, 3, 48, 48]),
            Case(name: "mobilenet-v2", model: { MobileNetV2(classes: 7, width: 0.35) }, input: [4, 3, 64, 64]),
            Case(name: "basic-cnn", model: { BasicCNN(classes: 7, channels: [8, 16, 16, 32]) }, input: [4, 3, 32, 32]),
        ]
        + EpilogueActivation.allCases.compactMap { activation in
            activation.standaloneOp.map { op in
                Case(name: "epilogue-\(activation)", model: { epilogueModel(op) }, input: [4, 3, 16, 16])
            }
        }

    /// Each fused form with `op` as its activation: conv+BN+act, conv+BN+add+act, conv+bias+act.
    static func epilogueModel(_ op: any Primitive) -> Sequential {
        Sequential {
            Conv2d(3, 8, kernel: 3, padding: 1, bias: false)
            BatchNorm2d(8)
            OpLayer(op)
            Residual {
                Conv2d(8, 8, kernel: 3, padding: 1, bias: false)
                BatchNorm2d(8)
            } output: {
                OpLayer(op)
            }
            Conv2d(8, 8, kernel: 1)
            OpLayer(op)
            AdaptiveAvgPool2d(1)
            Flatten()
            Linear(8, 7).named("fc")
        }
    }

    /// Every activation of the epilogue table fuses in each form, named by its kind suffix.
    @Test(arguments: EpilogueActivation.allCases.filter { $0 != .none })
    func everyEpilogueActivationFuses(_ activation: EpilogueActivation) throws {
        let graph = try Compiler.inference(Self.epilogueModel(activation.standaloneOp!), input: [2, 3, 16, 16])
        let suffix = activation.kindSuffix
        #expect(
            graph.nodes.map(\.op.kind).filter { $0.hasPrefix("Fused") } == [
                "FusedConvBN" + suffix, "FusedConvBNAdd" + suffix, "FusedConv" + suffix,
            ])
        #expect(!graph.nodes.contains { EpilogueActivation(fusing: $0.op) != nil }, "a standalone \(suffix) is left")
    }

    func feeds(_ shape: Shape) -> [String: Tensor] {
        let x = Tensor(zeros: shape)
        for i in 0..<x.count { x.floats[i] = Float((i * 7919) % 1000) / 500 - 1 }
        return ["input": x, "labels": Tensor(shape: [shape[0]], int64s: (0..<shape[0]).map { Int64($0 % 7) })]
    }

    @Test(arguments: cases)
    func fusedInferenceMatchesUnfused(_ c: Case) throws {
        let unfused = try Compiler.inference(c.model(), input: c.input, fuse: false)
        let fused = try Compiler.inference(c.model(), input: c.input)
        let store = ParameterStore(graph: unfused, seed: 3)
        randomizeRunningStatistics(store)
        let a = try Executor(graph: unfused, parameters: store).run(feeds(c.input))["logits"]!.scalars
        let b = try Executor(graph: fused, parameters: store).run(feeds(c.input))["logits"]!.scalars
        #expect(relativeError(b, a.map(Double.init)) < 1e-5)
        #expect(!fused.nodes.contains { $0.op is BatchNormOp }, "standalone BN left in \(c.name)")
        #expect(fused.nodes.count < unfused.nodes.count)
    }

    @Test(arguments: cases, [false, true])
    func fusedTrainingMatchesUnfused(_ c: Case, frozen: Bool) throws {
        let trainOnly: [String]? = frozen ? [c.name == "mobilenet-v2" ? "predictions" : "fc"] : nil
        let unfused = try Compiler.gradients(c.model(), input: c.input, trainOnly: trainOnly, fuse: false)
        let fused = try Compiler.gradients(c.model(), input: c.input, trainOnly: trainOnly)
        let reference = ParameterStore(graph: unfused, seed: 4)
        randomizeRunningStatistics(reference)
        let copy = ParameterStore()
        for key in reference.keys { copy.set(key, reference[key]!.clone()) }
        let activations = activationOutputs(fused)
        func run(_ graph: Graph, _ store: ParameterStore) throws -> (Executor, [String: Tensor]) {
            let keep = Set(graph.gradients.values.map { graph[$0].name }).union(activations.map(\.name))
            let executor = try Executor(graph: graph, parameters: store, mode: .training, keep: keep)
            return (executor, try executor.run(feeds(c.input)))
        }
        let (ue, uo) = try run(unfused, reference)
        let (fe, fo) = try run(fused, copy)
        #expect(relativeError(fo["logits"]!.scalars, uo["logits"]!.scalars.map(Double.init)) < 1e-5)
        #expect(abs(fo["loss"]!.scalars[0] - uo["loss"]!.scalars[0]) < 1e-5 * abs(uo["loss"]!.scalars[0]))
        #expect(fused.gradients.keys.sorted() == unfused.gradients.keys.sorted())
        // Gradients where no ReLU mask flip between the passes can reach them (see Float64EvaluatorTests).
        let (flipped, flips) = try flippedActivations(
            activations, { try fe.tensor(named: $0).scalars },
            { try ue.tensor(named: $0).scalars.map(Double.init) })
        #expect(flips <= 3, "\(c.name): \(flips) activations on different sides of a kink")
        let checked = gradientsUnaffected(by: flipped, in: fused)
        #expect(!checked.isEmpty && (flips > 0 || checked.count == fused.gradients.count))
        let unfusedGradients = try unfused.gradients.filter { checked.contains($0.key) }.mapValues {
            try ue.tensor(named: unfused[$0].name).scalars.map(Double.init)
        }
        let fusedGradients = try fused.gradients.filter { checked.contains($0.key) }.mapValues {
            try fe.tensor(named: fused[$0].name).scalars
        }
        let (worst, name) = worstGradientError(fusedGradients, unfusedGradients)
        #expect(worst < 1e-4, "\(c.name) d/d\(name): \(worst)")
        for key in reference.keys where key.contains("running") {
            #expect(relativeError(copy[key]!.scalars, reference[key]!.scalars.map(Double.init)) < 1e-5, "\(key)")
        }
    }

    @Test(arguments: cases)
    func everyZooPlanVerifies(_ c: Case) throws {
        let graphs = [
            try Compiler.inference(c.model(), input: c.input),
            try Compiler.inference(c.model(), input: c.input, fuse: false),
            try Compiler.training(c.model(), input: c.input, .init(optimizer: .sgd(.init(learningRate: 0.1, momentum: 0.9)))),
            try Compiler.training(c.model(), input: c.input, .init(optimizer: .adam(.init()), fuse: false)),
        ]
        for graph in graphs {
            let plan = Plan(graph)
            try PlanVerifier.verify(plan)
            #expect(plan.arenaBytes >= plan.lowerBoundBytes)
            #expect(plan.arenaBytes <= plan.naiveBytes)
        }
    }

    @Test func brokenPlansAreRejected() throws {
        let graph = try Compiler.training(
            ResNet18(classes: 7, width: 8), input: [2, 3, 32, 32], .init(optimizer: .sgd(.init(learningRate: 0.1))))
        let plan = Plan(graph)
        try PlanVerifier.verify(plan)
        // Move one region onto another that is alive at the same time.
        let regions = plan.regions
        var pair: (Int, Int)? = nil
        search: for i in regions.indices {
            for j in regions.indices where i != j && regions[i].offset != regions[j].offset {
                if regions[i].start <= regions[j].end && regions[j].start <= regions[i].end { pair = (i, j); break search }
            }
        }
        let (i, j) = try #require(pair)
        var overlapping = plan
        overlapping.regions[i].offset = regions[j].offset
        #expect(throws: PlanVerifier.Violation.self) { try PlanVerifier.verify(overlapping) }
        // A region past the end of the arena.
        var outside = plan
        outside.regions[0].offset = plan.arenaBytes
        #expect(throws: PlanVerifier.Violation.self) { try PlanVerifier.verify(outside) }
    }

    @Test func resnet18TrainPlanFusesEveryConv() throws {
        let graph = try Compiler.training(ResNet18(classes: 21), input: [2, 3, 64, 64], .init(optimizer: .sgd(.init(learningRate: 0.1))))
        let forward = graph.nodes.filter { $0.phase == .forward }
        #expect(forward.filter { $0.op is FusedConvBNOp }.count == 20)
        #expect(!graph.nodes.contains { $0.op is BatchNormOp || $0.op is Conv2DOp })
        let residual = forward.compactMap { $0.op as? FusedConvBNOp }.filter(\.hasResidual)
        #expect(residual.count == 8)
        #expect(
            forward.first { $0.name == "layer1.0.conv2" }!.fused == ["layer1.0.conv2", "layer1.0.bn2", "layer1.0.add", "layer1.0.relu_1"])
    }

    /// Keras' ZeroPadding2D before each stride-2 conv folds into the conv's (asymmetric) padding.
    @Test func zeroPaddingFoldsIntoTheConvThatReadsIt() throws {
        let model = MobileNetV2(classes: 7, width: 0.35)
        let unfused = try Compiler.gradients(model, input: [2, 3, 64, 64], fuse: false)
        let fused = try Compiler.gradients(model, input: [2, 3, 64, 64])
        #expect(unfused.nodes.filter { $0.op is ZeroPad2DOp }.count == 5)  // Conv1_pad, block_{1,3,6,13}_pad
        #expect(!fused.nodes.contains { $0.op is ZeroPad2DOp || $0.op is ZeroPad2DBackwardOp })
        let depthwise = try #require(fused.node(named: "block_1_depthwise"))
        #expect(depthwise.fused.first == "block_1_pad")
        #expect((depthwise.op as? FusedConvBNOp)?.conv.padding == Padding(top: 0, left: 0, bottom: 1, right: 1))
    }

    @Test func frozenPlanHasNoBackwardStepBeforeTheClassifier() throws {
        let graph = try Compiler.training(
            ResNet18(classes: 21), input: [2, 3, 64, 64],
            .init(optimizer: .sgd(.init(learningRate: 0.1)), trainOnly: ["fc"]))
        let plan = Plan(graph)
        let steps = plan.order.map { graph.nodes[$0] }
        let firstBackward = try #require(steps.firstIndex { $0.phase == .backward })
        #expect(steps[..<firstBackward].last { $0.phase == .forward }?.name == "loss")
        for step in steps where step.phase == .backward {
            #expect(step.name.hasPrefix("fc.") || step.name.hasPrefix("loss."), "\(step.name)")
        }
        // No activation of the backbone is alive after the forward pass: the frozen arena is the inference arena.
        let inference = Plan(try Compiler.inference(ResNet18(classes: 21), input: [2, 3, 64, 64]))
        #expect(Double(plan.arenaBytes) <= 1.05 * Double(inference.arenaBytes))
    }

    /// An executor told its weights are constant folds BN into the convs once and reuses it: the
    /// same logits as folding per run, on every run; a change to the store after the first run is
    /// (by contract) not seen, which shows the folded filters really are kept. At width 8 no conv
    /// takes Winograd and the kept filters give the same bits. At width 64 on 64² inputs the 3×3
    /// convs of layer1 take Winograd either way, and layer2's (8×8 maps, 64 tiles at batch 4) only
    /// with filters prepared once: the logits then agree to float rounding.
    @Test(arguments: [(8, 2, 32), (64, 4, 64)])
    func constantWeightsFoldOnceAndComputeTheSame(_ config: (width: Int, batch: Int, side: Int)) throws {
        let input: Shape = [config.batch, 3, config.side, config.side]
        let graph = try Compiler.inference(ResNet18(classes: 7, width: config.width), input: input)
        let store = ParameterStore(graph: graph, seed: 6)
        randomizeRunningStatistics(store)
        let folding = try Executor(graph: graph, parameters: store)
        let constant = try Executor(graph: graph, parameters: store, constantWeights: true)
        for scale in [1, -2] as [Float] {
            let x = feeds(input)["input"]!
            for i in 0..<x.count { x.floats[i] *= scale }
            let a = try folding.run(["input": x])["logits"]!.scalars
            let b = try constant.run(["input": x])["logits"]!.scalars
            if config.width < 64 {
                #expect(a == b)
            } else {
                #expect(a != b && relativeError(b, a.map(Double.init)) < 1e-5)
            }
        }
        let gamma = store["layer1.0.bn1.weight"]!
        for i in 0..<gamma.count { gamma.floats[i] *= 3 }
        let x = feeds(input)["input"]!
        let changed = try folding.run(["input": x])["logits"]!.scalars
        let kept = try constant.run(["input": x])["logits"]!.scalars
        #expect(changed != kept)
    }

    /// Recomputing y = act(BN(z)) in the backward pass gives the same training steps, bit for bit
    /// (the moments are summed in the forward's order), in a smaller arena.
    @Test(arguments: cases.prefix(2))
    func rematerializedStepsEqualKeptOnesInLessMemory(_ c: Case) throws {
        func compile(_ rematerialize: Bool) throws -> Graph {
            var configuration = TrainStep.Configuration(optimizer: .sgd(.init(learningRate: 0.1, momentum: 0.9)))
            configuration.rematerialize = rematerialize
            return try Compiler.training(c.model(), input: c.input, configuration)
        }
        let (kept, recomputed) = (try compile(false), try compile(true))
        let sites = kept.nodes.filter { node in
            guard let fused = node.op as? FusedConvBNOp, !fused.hasResidual, !fused.bn.usesRunningStatistics else { return false }
            return kept.readers(of: node.output).contains { $0.phase == .backward }
        }
        #expect(!sites.isEmpty)
        #expect(recomputed.nodes.filter { $0.op is FusedBNRecomputeOp }.map(\.name) == sites.reversed().map { "\($0.name).recompute" })
        for site in sites {  // the forward's y has no backward reader left
            let y = try recomputed.value(named: kept[site.output].name)
            let late = recomputed.readers(of: y.id).filter { $0.phase != .forward }.map(\.name)
            #expect(late.isEmpty, "\(site.name): \(late)")
        }
        #expect(Plan(recomputed).arenaBytes < Plan(kept).arenaBytes * 4 / 5)

        let reference = ParameterStore(graph: kept, seed: 5)
        let copy = ParameterStore()
        for key in reference.keys { copy.set(key, reference[key]!.clone()) }
        let a = try Executor(graph: kept, parameters: reference, mode: .training)
        let b = try Executor(graph: recomputed, parameters: copy, mode: .training)
        for step in 1...2 {
            let hyper = StepHyperparameters(learningRate: 0.1, step: Int64(step))
            let la = try a.run(feeds(c.input), hyper: hyper)["loss"]!.scalars
            let lb = try b.run(feeds(c.input), hyper: hyper)["loss"]!.scalars
            #expect(la == lb, "step \(step)")
        }
        for key in reference.keys { #expect(copy[key]!.scalars == reference[key]!.scalars, "\(key)") }
    }

    func randomizeRunningStatistics(_ store: ParameterStore) {
        for key in store.keys where key.hasSuffix("running_mean") || key.hasSuffix("running_var") {
            let t = store[key]!
            for i in 0..<t.count { t.floats[i] = key.hasSuffix("var") ? 0.5 + Float(i % 7) / 7 : Float(i % 5) / 10 - 0.2 }
        }
    }
}
