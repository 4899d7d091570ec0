/// Trainability: which parameters train, and what frozen BatchNorm layers do.
extension Graph {
    /// Freezes every parameter under the given module prefixes (`"layer1"` freezes
    /// `layer1.0.conv1.weight`, not `layer10.…`).
    public mutating func freeze(_ prefixes: String...) { freeze(prefixes) }

    public mutating func freeze(_ prefixes: [String]) {
        for p in parameters where prefixes.contains(where: { p.name.hasModulePrefix($0) }) { frozen.insert(p.name) }
    }

    /// Freezes everything except the given modules (`freeze(allExcept: ["fc"])`: train the classifier only).
    public mutating func freeze(allExcept prefixes: [String]) {
        for p in parameters where !prefixes.contains(where: { p.name.hasModulePrefix($0) }) { frozen.insert(p.name) }
    }

    public mutating func unfreezeAll() { frozen.removeAll() }

    /// Parameters in state_dict order with their trainable flag (what the seed prints as requires_grad).
    public var parameterList: [(name: String, shape: Shape, trainable: Bool)] {
        parameters.map { ($0.name, $0.shape, isTrainable($0)) }
    }
}

/// What BatchNorm layers whose weight and bias are frozen do in a training step.
public enum FrozenBatchNorm: String, Sendable, CaseIterable {
    /// Normalise with the running statistics and never update them (Keras/TF2; PyTorch users get
    /// this by calling eval() on the frozen BN modules). The frozen part then costs an inference pass.
    case runningStatistics
    /// PyTorch's behaviour with requires_grad=False alone: batch statistics and running updates.
    case batchStatistics
}

/// The one place that decides which BatchNorm nodes normalise with their running statistics:
/// all of them in inference; in training, those whose affine parameters are both frozen when
/// frozen BN runs on running statistics (the default). A BN built on running statistics stays so.
enum BatchNormStatisticsPass {
    static func apply(_ graph: inout Graph, _ target: Compiler.Target) {
        for node in graph.nodes {
            guard var bn = node.op as? BatchNormOp else { continue }
            let running: Bool
            switch target {
            case .inference: running = true
            case .training(.batchStatistics, _): running = false
            case .training(.runningStatistics, _):
                running = [graph[node.inputs[1]], graph[node.inputs[2]]].allSatisfy { !graph.isTrainable($0) }
            }
            if running && !bn.usesRunningStatistics {
                bn.usesRunningStatistics = true
                graph.replaceOp(ofNode: node.index, with: bn)
            }
        }
    }
}

extension String {
    func hasModulePrefix(_ prefix: String) -> Bool {
        prefix.isEmpty || self == prefix || hasPrefix(prefix.hasSuffix(".") ? prefix : prefix + ".")
    }
}
