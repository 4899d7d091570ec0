import Foundation
import CKernels
@testable import Kiln
import KilnModels
import Testing

/// The float64 evaluator as the precision oracle: it reproduces PyTorch's float64 gradients to
/// float32 storage precision (the float32 kernels get 7.5e-6 there), and the compiled float32
/// executor — fused, planned, Winograd where it applies — agrees with it on every zoo model.
struct Float64EvaluatorTests {
    @Test(arguments: [0, 1])
    func reproducesPyTorchFloat64Gradients(_ index: Int) throws {
        let (fixture, makeModel) = TrainingParityTests.gradientCases[index]
        let input = try NPY.readDoubles(FixtureWeights.url(fixture, "input.npy"))
        let labels = try NPY.read(FixtureWeights.url(fixture, "labels.npy"))
        let graph = try Compiler.gradients(makeModel(), input: input.shape, fuse: false)
        let keep = Set(graph.gradients.values.map { graph[$0].name })
        let result = try Float64Evaluator(graph: graph).run(
            ["input": Float64Tensor(shape: input.shape, values: input.values), "labels": Float64Tensor(labels)],
            parameters: FixtureWeights.store(for: graph), mode: .training, keep: keep)

        let loss = try NPY.readDoubles(FixtureWeights.url(fixture, "loss.npy")).values[0]
        #expect(abs(result["loss"]!.scalars[0] - loss) / abs(loss) < 1e-10)
        var worst = 0.0
        for parameter in graph.parameters {
            let reference = try NPY.read(FixtureWeights.url(fixture, "grad_\(parameter.name).npy"))  // float64, stored rounded to float32
            let ours = result[graph[graph.gradients[parameter.name]!].name]!
            let error = relativeError(reference.scalars, ours.scalars)
            worst = max(worst, error)
            #expect(error < 5e-7, "\(parameter.name): relative error \(error)")
        }
        print("\(fixture) float64 evaluator: \(graph.parameters.count) gradients, worst relative error \(worst)")
    }

    struct Case: CustomStringConvertible, Sendable {
        let model: String
        let width: Double
        let side: Int
        var trainOnly: [String]? = nil
        var description: String { "\(model) ×\(width) \(side)²" + (trainOnly.map { " training only \($0)" } ?? "") }
    }

    static let zoo: [Case] = [
        Case(model: "resnet18", width: 0.125, side: 64),
        Case(model: "resnet18", width: 0.125, side: 64, trainOnly: ["fc"]),
        Case(model: "resnet18", width: 1, side: 64),  // full width: Winograd in layer1 and layer2
        Case(model: "basic-cnn", width: 0.25, side: 64),
        Case(model: "mobilenet-v2", width: 0.35, side: 64),
        Case(model: "mobilenet-v2", width: 0.35, side: 64, trainOnly: ["predictions", "Conv_1", "Conv_1_bn"]),
    ]

    @Test(arguments: zoo)
    func compiledExecutorAgreesWithTheEvaluator(_ c: Case) throws {
        let layers = try Zoo.model(c.model, classes: 21, width: c.width)
        let shape: Shape = [4, 3, c.side, c.side]
        let input = Tensor(shape: shape, values: FixtureWeights.unit("evaluator/\(c.model)", count: shape.count))
        let labels = Tensor(shape: [4], int64s: [3, 17, 0, 9])
        let feeds64 = ["input": Float64Tensor(input), "labels": Float64Tensor(labels)]

        // Logits in eval mode.
        let inference = try Compiler.inference(layers, input: shape)
        let store = FixtureWeights.store(for: try Graph.trace(layers, input: shape))
        let logits = try Executor(graph: inference, parameters: store).run(["input": input])["logits"]!.scalars
        let reference = try Float64Evaluator(graph: try Compiler.inference(layers, input: shape, fuse: false))
            .run(["input": feeds64["input"]!], parameters: store, mode: .inference)["logits"]!.scalars
        #expect(relativeError(logits, reference) < 1e-5, "\(c): logits")

        // Loss and gradients in training mode (frozen BN on running statistics when training only the head).
        let compiled = try Compiler.gradients(layers, input: shape, trainOnly: c.trainOnly)
        let activations = activationOutputs(compiled)
        let keep = Set(compiled.gradients.values.map { compiled[$0].name }).union(activations.map(\.name))
        let executor = try Executor(graph: compiled, parameters: store, mode: .training, keep: keep)
        let loss = try executor.run(["input": input, "labels": labels])["loss"]!.scalars[0]
        let plain = try Compiler.gradients(layers, input: shape, trainOnly: c.trainOnly, fuse: false)
        let expected = try Float64Evaluator(graph: plain).run(
            feeds64, parameters: store, mode: .training,
            keep: Set(plain.gradients.values.map { plain[$0].name }).union(activations.map(\.name)))
        #expect(abs(Double(loss) - expected["loss"]!.scalars[0]) < 1e-5 * abs(expected["loss"]!.scalars[0]))
        #expect(compiled.gradients.keys.sorted() == plain.gradients.keys.sorted())

        // Where a pre-activation lies within float32 rounding of a ReLU/ReLU6 kink the two passes
        // may take different sides, and every gradient upstream of it jumps discretely. A few flips
        // are allowed (many would be a bug); gradients are compared where no flip can reach them:
        // all of them when the masks agree, else those of parameters after the last flip.
        let (flipped, flips) = try flippedActivations(activations, { try executor.tensor(named: $0).scalars }, { expected[$0]!.scalars })
        #expect(flips <= 3, "\(c): \(flips) activations on different sides of a kink")
        let checked = gradientsUnaffected(by: flipped, in: compiled)
        #expect(flips > 0 || checked.count == compiled.gradients.count)
        #expect(!checked.isEmpty, "\(c): no gradient is out of reach of the flips at \(flipped)")
        let ours = try compiled.gradients.filter { checked.contains($0.key) }.mapValues {
            try executor.tensor(named: compiled[$0].name).scalars
        }
        let exact = plain.gradients.filter { checked.contains($0.key) }.mapValues { expected[plain[$0].name]!.scalars }
        let (worst, name) = worstGradientError(ours, exact)
        #expect(worst < 1e-4, "\(c): d loss / d \(name) relative error \(worst)")
        print(
            "\(c): \(checked.count) of \(compiled.gradients.count) gradients checked, worst relative error vs float64 \(worst)"
                + (flips == 0 ? "" : " (\(flips) activation mask flips at \(flipped))"))
    }

    /// Eval logits where Winograd F(4×4) runs in layer1, layer2 and layer3 (full-width ResNet-18,
    /// 16 images at 112²: 196, 49 and 16 2×2 tiles per image) stay within 1e-5 of float64.
    @Test func winogradInferenceLogitsMatchFloat64() throws {
        let layers = try Zoo.model("resnet18", classes: 21, width: 1)
        let shape: Shape = [16, 3, 112, 112]
        let input = Tensor(shape: shape, values: FixtureWeights.unit("evaluator/winograd", count: shape.count))
        let inference = try Compiler.inference(layers, input: shape)
        var winograd = 0
        for node in inference.nodes {
            guard let fused = node.op as? FusedConvBNOp else { continue }
            var d = fused.conv.descriptor(inference[node.inputs[0]].shape, inference[node.inputs[1]].shape)
            if kn_conv2d_geometry(&d) == 0 && kn_conv2d_winograd_eligible(&d) == 1 { winograd += 1 }
        }
        #expect(winograd == 10)  // layer1–3's 3×3 stride-1 convs (layer4's maps give too few tiles)
        let store = FixtureWeights.store(for: try Graph.trace(layers, input: shape))
        let logits = try Executor(graph: inference, parameters: store).run(["input": input])["logits"]!.scalars
        let reference = try Float64Evaluator(graph: try Compiler.inference(layers, input: shape, fuse: false))
            .run(["input": Float64Tensor(input)], parameters: store, mode: .inference)["logits"]!.scalars
        let error = relativeError(logits, reference)
        #expect(error < 1e-5, "logits relative error \(error)")
        print("ResNet-18 at 112², 16 images, Winograd F(4×4) in 10 convs: eval logits vs float64 \(error)")
    }

    @Test func refusesFusedGraphsNamingTheNode() throws {
        let graph = try Compiler.inference(ResNet18(classes: 10, width: 8), input: [1, 3, 32, 32])
        #expect {
            try Float64Evaluator(graph: graph)
        } throws: { error in
            "\(error)".contains("'conv1'") && "\(error)".contains("no float64 definition")
        }
    }
}
