/// Where a training graph's frozen prefix meets the part that trains.
///
/// The *frozen prefix* is every forward node that reads no trainable parameter, directly or
/// through another node, and not the labels: with the backbone frozen, the whole feature
/// extractor. Its *boundary* is the prefix values the trained part reads (ResNet-18 with only
/// `fc` training: the pooled, flattened features). When every prefix node is a deterministic
/// function of each sample alone — BN on running statistics, no active dropout, nothing mixing
/// the batch — the boundary values of an image never change while the weights stay frozen, so a
/// trainer may compute them once and train the head on them (`TrainStep.Configuration.startAt`).
public struct FrozenBoundary: Sendable, Equatable {
    /// The boundary values by name, in graph order (`input` itself when nothing is frozen first).
    public let values: [String]
    /// Their shapes without the batch dimension.
    public let sampleShapes: [Shape]
    /// Names of the prefix's forward nodes.
    public let prefix: [String]
    /// The parameters and buffers the prefix reads (what its outputs depend on besides the input).
    public let prefixState: [String]
    /// The first prefix node that is not a per-sample deterministic function, or nil: the
    /// boundary may be cached only when this is nil.
    public let obstacle: String?

    public var isCacheable: Bool { obstacle == nil && !prefix.isEmpty }
    /// Floats of boundary values per sample (what a cache holds per image and variant).
    public var floatsPerSample: Int { sampleShapes.reduce(0) { $0 + $1.count } }
}

extension Primitive {
    /// Whether, in a training step, the op computes each sample of the batch from that sample
    /// alone and deterministically (what the frozen-feature cache needs of the frozen prefix).
    public var isPerSampleFunction: Bool {
        switch self {
        case let dropout as DropoutOp: dropout.p == 0
        case let bn as BatchNormOp: bn.usesRunningStatistics
        case let fused as FusedConvBNOp: fused.bn.usesRunningStatistics
        case let reduce as ReduceOp: reduce.axes.allSatisfy { $0 > 0 }
        default: true
        }
    }
}

extension Graph {
    /// The frozen prefix and boundary of a training graph (traced with its loss, frozen, BN
    /// statistics decided; fused or not). Only forward nodes count.
    public func frozenBoundary() -> FrozenBoundary {
        var frozenWorld = values.map { value -> Bool in
            switch value.role {
            case .input: value.name != "labels"
            case .parameter: !isTrainable(value)
            case .buffer: true
            case .activation, .optimizerState: false
            }
        }
        var inPrefix = [Bool](repeating: false, count: nodes.count)
        var obstacle: String?
        for node in nodes where node.phase == .forward && node.inputs.allSatisfy({ frozenWorld[$0.index] }) {
            inPrefix[node.index] = true
            for output in node.outputs { frozenWorld[output.index] = true }
            let keepsBatch =
                node.inputs.first.map {
                    self[$0].shape.rank > 0 && self[node.output].shape.rank > 0
                        && self[$0].shape[0] == self[node.output].shape[0]
                } ?? false
            if obstacle == nil && !(node.op.isPerSampleFunction && keepsBatch) { obstacle = node.name }
        }
        let boundary = values.filter { value in
            (value.role == .activation || value.role == .input) && frozenWorld[value.id.index]
                && readers(of: value.id).contains { $0.phase == .forward && !inPrefix[$0.index] }
        }
        let prefixNodes = nodes.filter { inPrefix[$0.index] }
        let state = Set(prefixNodes.flatMap(\.inputs)).filter { [.parameter, .buffer].contains(self[$0].role) }
        return FrozenBoundary(
            values: boundary.map(\.name), sampleShapes: boundary.map { Shape(Array($0.shape.dims.dropFirst())) },
            prefix: prefixNodes.map(\.name), prefixState: state.sorted().map { self[$0].name }, obstacle: obstacle)
    }

    /// The subgraph computing `outputs` (role → value name) where the values named in `leaves`
    /// are inputs: only the nodes these outputs need, only the state values those nodes read.
    /// Used before autodiff: the head of a cut training graph, a feature extractor.
    public func extracting(outputs wanted: [String: String], leaves: [String]) throws -> Graph {
        let leafIDs = Set(try leaves.map { try value(named: $0).id })
        var needed = Set<Int>()
        var stack = try wanted.values.map { try value(named: $0).id }
        var seen = Set(stack)
        while let id = stack.popLast() {
            guard !leafIDs.contains(id), let producer = self[id].producer else { continue }
            needed.insert(producer)
            for input in nodes[producer].inputs where seen.insert(input).inserted { stack.append(input) }
        }
        var result = Graph()
        var map: [Int: ValueID] = [:]
        for value in values where leafIDs.contains(value.id) || (value.role != .activation && seen.contains(value.id)) {
            let leaf = leafIDs.contains(value.id)
            map[value.id.index] = try result.addValue(
                name: value.name, shape: value.shape, dtype: value.dtype, role: leaf ? .input : value.role,
                initializer: leaf ? nil : value.initializer)
        }
        for node in nodes where needed.contains(node.index) {
            _ = try result.addNode(
                name: node.name, op: node.op, inputs: node.inputs.map { map[$0.index]! }, phase: node.phase, fused: node.fused,
                outputNames: node.outputs.map { self[$0].name })
            for (old, new) in zip(node.outputs, result.nodes.last!.outputs) { map[old.index] = new }
        }
        result.outputs = try wanted.mapValues { name in map[try value(named: name).id.index]! }
        result.frozen = frozen.filter { name in result.parameters.contains { $0.name == name } }
        return result
    }
}
