import Foundation
import Kiln
import KilnModels
import Testing

/// Forward parity with PyTorch (float64 reference, Tests/Fixtures/generate.py): eval-mode and
/// training-mode logits within 1e-5 relative, the loss, and the running statistics after one
/// training-mode forward.
struct ParityTests {
    static let models = ["resnet18", "basic-cnn"]

    func setUp(_ model: String, mode: Mode) throws -> (Executor, Tensor, Tensor) {
        let input = try NPY.read(FixtureWeights.url(model, "input.npy"))
        let labels = try NPY.read(FixtureWeights.url(model, "labels.npy"))
        let graph = try Graph.trace(try Zoo.model(model, classes: 21), input: input.shape, withLoss: true)
        let executor = try Executor(graph: graph, parameters: FixtureWeights.store(for: graph), mode: mode)
        return (executor, input, labels)
    }

    @Test(arguments: models)
    func evalLogitsMatchPyTorch(_ model: String) throws {
        let (executor, input, labels) = try setUp(model, mode: .inference)
        let logits = try executor.run(["input": input, "labels": labels])["logits"]!
        let reference = try NPY.readDoubles(FixtureWeights.url(model, "logits_eval.npy"))
        #expect(logits.shape == reference.shape)
        let error = relativeError(logits.scalars, reference.values)
        #expect(error < 1e-5, "\(model) eval logits relative error \(error)")
    }

    @Test(arguments: models)
    func trainModeForwardMatchesPyTorch(_ model: String) throws {
        let (executor, input, labels) = try setUp(model, mode: .training)
        let outputs = try executor.run(["input": input, "labels": labels])
        let reference = try NPY.readDoubles(FixtureWeights.url(model, "logits_train.npy"))
        let error = relativeError(outputs["logits"]!.scalars, reference.values)
        #expect(error < 1e-5, "\(model) train logits relative error \(error)")
        let loss = try NPY.readDoubles(FixtureWeights.url(model, "loss_train.npy")).values[0]
        #expect(abs(Double(outputs["loss"]!.scalars[0]) - loss) / abs(loss) < 1e-5)

        let files = try FileManager.default.contentsOfDirectory(atPath: FixtureWeights.directory.appendingPathComponent(model).path)
        let stateFiles = files.filter { $0.hasPrefix("state_") }
        #expect(!stateFiles.isEmpty)
        for file in stateFiles {
            let key = String(file.dropFirst("state_".count).dropLast(".npy".count))
            let expected = try NPY.readDoubles(FixtureWeights.url(model, file)).values
            let actual = try #require(executor.parameters[key]).scalars
            #expect(relativeError(actual, expected) < 1e-5, "\(key)")
        }
        #expect(executor.parameters["fc.weight"] != nil)
    }
}

func relativeError(_ a: [Float], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "\(a.count) vs \(b.count) elements")
    var diff = 0.0, scale = 1e-30
    for (x, y) in zip(a, b) {
        diff = max(diff, abs(Double(x) - y))
        scale = max(scale, abs(y))
    }
    return diff / scale
}

/// Worst max-norm relative error over a model's gradients (by parameter name), each tensor
/// measured against at least 1% of the model's largest gradient: a BN bias that feeds another
/// batch-statistics BN has an exact gradient of 0 (the shift is normalised away) while float32
/// rounding leaves ~1e-6 there, and relative to 0 any rounding is an infinite error.
func worstGradientError(_ ours: [String: [Float]], _ reference: [String: [Double]]) -> (error: Double, name: String) {
    let floor = 1e-2 * reference.values.map { $0.map(abs).max() ?? 0 }.max()!
    var worst = (error: 0.0, name: "")
    for (name, values) in reference {
        let scale = max(values.map(abs).max() ?? 0, floor)
        let error = zip(ours[name]!, values).map { abs(Double($0) - $1) }.max()! / scale
        if error >= worst.error { worst = (error, name) }
    }
    return worst
}

/// The outputs of ReLU/ReLU6 steps (fused or not) with their upper kink, by value name (the same
/// names in fused and unfused graphs).
func activationOutputs(_ graph: Graph) -> [(name: String, upper: Float)] {
    graph.nodes.filter { $0.phase == .forward }.compactMap { node in
        let upper: Float? =
            switch node.op {
            case is ReLUOp: .infinity
            case is ReLU6Op: 6
            case let fused as FusedConvBNOp: fused.activation == .relu ? .infinity : fused.activation == .relu6 ? 6 : nil
            default: nil
            }
        return upper.map { (graph[node.output].name, $0) }
    }
}

/// Elements that two passes put on different sides of a ReLU/ReLU6 kink.
func maskFlips(_ a: [Float], _ b: [Double], upper: Float) -> Int {
    zip(a, b).filter { ($0.0 > 0 && $0.0 < upper) != ($0.1 > 0 && $0.1 < Double(upper)) }.count
}

/// Parameters whose gradients a mask flip at the `flipped` activations cannot reach: those read
/// only by forward nodes after the last flipped activation (in the graph's topological order, so
/// none of those activations lies downstream of them, on their backward path).
func gradientsUnaffected(by flipped: [String], in graph: Graph) -> Set<String> {
    let last =
        graph.nodes.filter { node in node.phase == .forward && node.outputs.contains { flipped.contains(graph[$0].name) } }
        .map(\.index).max() ?? -1
    return Set(
        graph.gradients.keys.filter { name in
            graph.nodes.filter { $0.phase == .forward && $0.inputs.contains { graph[$0].name == name } }.allSatisfy { $0.index > last }
        })
}

/// The activations (of `activationOutputs`) two passes disagree on, with the number of flips.
func flippedActivations(
    _ activations: [(name: String, upper: Float)], _ ours: (String) throws -> [Float],
    _ reference: (String) throws -> [Double]
) rethrows -> (names: [String], flips: Int) {
    var names: [String] = [], total = 0
    for activation in activations {
        let flips = maskFlips(try ours(activation.name), try reference(activation.name), upper: activation.upper)
        if flips > 0 { names.append(activation.name); total += flips }
    }
    return (names, total)
}
