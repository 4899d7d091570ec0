/// What a float64 rule sees besides its inputs.
public struct Float64Call {
    public let node: String
    public let outputShape: Shape
    public let mode: Mode
    /// The run seed (stochastic ops derive their masks from it as the executor does).
    public let seed: UInt64
}

/// An op's definition in float64: the textbook computation, with no rounding to float32, no
/// fusion and no memory plan. Pure: state updates (BN running statistics) are not applied.
public protocol Float64Definition {
    func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor
}

/// Evaluates a graph node by node in float64 (what XLA's HloEvaluator is to its compiler): the
/// precision oracle behind `graphc grad --precision float64`, and a second implementation the
/// compiled executor is tested against. Takes unfused graphs without optimizer updates, e.g.
/// `Compiler.gradients(…, fuse: false)`.
public struct Float64Evaluator {
    public let graph: Graph

    public init(graph: Graph) throws {
        for node in graph.nodes {
            guard node.op is Float64Definition, node.outputs.count == 1 else {
                throw GraphError.invalid(
                    "node '\(node.name)' (\(node.op.kind)) has no float64 definition: evaluate the unfused graph without optimizer updates")
            }
        }
        self.graph = graph
    }

    /// Runs the graph on `feeds` (by input name) with parameters and buffers from `parameters`.
    /// Returns the graph's outputs by role ("loss", "logits") and every value named in `keep`.
    public func run(
        _ feeds: [String: Float64Tensor], parameters: ParameterStore, mode: Mode, seed: UInt64 = 0,
        keep: Set<String> = []
    ) throws -> [String: Float64Tensor] {
        var state: [String: Float64Tensor] = [:]
        for value in graph.stateValues {
            guard let tensor = parameters[value.name] else { throw GraphError.unknownName(value.name) }
            state[value.name] = Float64Tensor(tensor)
        }
        return try run(feeds, state: state, mode: mode, seed: seed, keep: keep)
    }

    /// Runs the graph with parameters and buffers given in float64 (finite differences perturb
    /// them below float32's resolution).
    public func run(
        _ feeds: [String: Float64Tensor], state: [String: Float64Tensor], mode: Mode, seed: UInt64 = 0,
        keep: Set<String> = []
    ) throws -> [String: Float64Tensor] {
        var values = [Float64Tensor?](repeating: nil, count: graph.values.count)
        for value in graph.values where value.role != .activation {
            let source = value.role == .input ? feeds : state
            guard let tensor = source[value.name] else {
                throw GraphError.unknownName(value.role == .input ? "input '\(value.name)' was not fed" : value.name)
            }
            guard tensor.shape == value.shape else {
                throw GraphError.invalid("'\(value.name)' has shape \(tensor.shape), graph expects \(value.shape)")
            }
            values[value.id.index] = tensor
        }
        let wanted = Set(graph.outputs.values).union(try keep.map { try graph.value(named: $0).id })

        let runSeed = Executor.runSeed(seed, run: 1)
        for node in graph.nodes {
            let call = Float64Call(node: node.name, outputShape: graph[node.output].shape, mode: mode, seed: runSeed)
            let inputs = node.inputs.map { values[$0.index]! }
            values[node.output.index] = try (node.op as! Float64Definition).evaluate(inputs, call)
            for input in node.inputs
            where graph.readers(of: input).last?.index == node.index && !wanted.contains(input)
                && graph[input].role == .activation
            {
                values[input.index] = nil
            }
        }
        var result: [String: Float64Tensor] = [:]
        for (role, id) in graph.outputs { result[role] = values[id.index] }
        for name in keep { result[name] = values[try graph.value(named: name).id.index] }
        return result
    }
}
