/// Runs a graph node by node over buffers allocated once at construction. Activations whose last
/// reader has run hand their buffer to later nodes of the same size (a simple stand-in for the
/// arena planner), so inference memory stays near the live set.
public final class Executor {
    public let graph: Graph
    public let mode: Mode
    public let parameters: ParameterStore
    /// Per value index: the tensor that holds it during a run (activations may share).
    private var slots: [Tensor?]
    private var runs: UInt64 = 0
    private let seed: UInt64

    /// - Parameter keep: names of activations that must survive the run (beyond the outputs),
    ///   e.g. for forward-hook style inspection.
    public init(graph: Graph, parameters: ParameterStore, mode: Mode = .inference,
                keep: Set<String> = [], seed: UInt64 = 0) throws {
        try parameters.validate(against: graph)
        self.graph = graph
        self.mode = mode
        self.parameters = parameters
        self.seed = seed
        slots = Array(repeating: nil, count: graph.values.count)
        for value in graph.persistentValues { slots[value.id.index] = parameters[value.name] }
        for value in graph.inputs { slots[value.id.index] = Tensor(zeros: value.shape, dtype: value.dtype) }
        allocateActivations(keep: keep.union(graph.outputs.values.map { graph[$0].name }))
    }

    private func allocateActivations(keep: Set<String>) {
        var lastUse = [Int](repeating: -1, count: graph.values.count)
        for node in graph.nodes { for input in node.inputs { lastUse[input.index] = node.index } }
        var free: [String: [Tensor]] = [:]
        func key(_ v: Graph.Value) -> String { "\(v.dtype)-\(v.shape.count)" }
        for node in graph.nodes {
            let out = graph[node.output]
            let reuse = free[key(out)]?.popLast()
            slots[out.id.index] = reuse.map { $0.shape == out.shape ? $0 : Tensor(sharing: $0, as: out.shape) }
                ?? Tensor(zeros: out.shape, dtype: out.dtype)
            for input in Set(node.inputs) where lastUse[input.index] == node.index {
                let v = graph[input]
                if v.role == .activation, !keep.contains(v.name), let t = slots[input.index] {
                    free[key(v), default: []].append(t)
                }
            }
        }
    }

    /// Bytes held by distinct activation buffers.
    public var activationBytes: Int {
        var seen = Set<ObjectIdentifier>()
        return graph.values.filter { $0.role == .activation }.reduce(0) { total, v in
            guard let t = slots[v.id.index], seen.insert(ObjectIdentifier(t.storageOwner)).inserted else { return total }
            return total + t.byteCount
        }
    }

    /// Runs the graph on `feeds` (by input name: "input", "labels") and returns its outputs by role.
    /// Returned tensors are the executor's own buffers: copy them to keep them past the next run.
    @discardableResult
    public func run(_ feeds: [String: Tensor], hyper: StepHyperparameters = StepHyperparameters()) throws -> [String: Tensor] {
        for value in graph.inputs {
            guard let feed = feeds[value.name] else { throw GraphError.unknownName("input '\(value.name)' was not fed") }
            guard feed.shape == value.shape, feed.dtype == value.dtype else {
                throw GraphError.invalid("input '\(value.name)' has shape \(feed.shape) \(feed.dtype), graph expects \(value.shape) \(value.dtype)")
            }
            slots[value.id.index]!.copy(from: feed)
        }
        runs += 1
        for node in graph.nodes {
            var call = KernelCall(node: node.name, inputs: node.inputs.map { slots[$0.index]! },
                                  output: slots[node.output.index]!, mode: mode,
                                  seed: seed ^ (runs &* 0x9E37_79B9_7F4A_7C15))
            call.hyper = hyper
            try node.op.forward(call)
        }
        return graph.outputs.mapValues { slots[$0.index]! }
    }

    /// The tensor currently holding the value `name` (valid for outputs and kept activations).
    public func tensor(named name: String) throws -> Tensor {
        let value = try graph.value(named: name)
        return slots[value.id.index]!
    }
}
