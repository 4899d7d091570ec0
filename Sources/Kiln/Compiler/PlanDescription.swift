import Foundation

/// The printable form of a plan: `graphc dump`'s text and JSON.
public struct PlanDescription: Encodable {
    public struct Tensor: Encodable {
        public let name: String
        public let shape: [Int]
        /// Arena offset, or nil for values in the parameter or gradient stores.
        public let offset: Int?
        public let bytes: Int
        public let store: String
    }

    public struct Step: Encodable {
        public let index: Int
        public let name: String
        public let kind: String
        public let fused: [String]
        public let phase: String
        public let attributes: String
        public let inputs: [Tensor]
        public let outputs: [Tensor]
    }

    public struct Memory: Encodable {
        public let arena_bytes: Int
        public let naive_bytes: Int
        public let lower_bound_bytes: Int
        public let gradient_bytes: Int
        public let parameter_bytes: Int
        public let optimizer_state_bytes: Int
    }

    public struct Param: Encodable {
        public let name: String
        public let shape: [Int]
        public let trainable: Bool
    }

    public struct Counts: Encodable {
        public let forward: Int
        public let backward: Int
        public let update: Int
    }

    public let steps: [Step]
    public let memory: Memory
    public let params: [Param]
    public let counts: Counts

    public init(_ plan: Plan) {
        let graph = plan.graph
        let gradients = Set(graph.gradients.values)
        func tensor(_ id: Graph.ValueID) -> Tensor {
            let v = graph[id]
            let store: String =
                switch v.role {
                case .parameter, .buffer: "parameters"
                case .optimizerState: "optimizer"
                case .input, .activation: gradients.contains(id) ? "gradients" : "arena"
                }
            return Tensor(
                name: v.name, shape: v.shape.dims, offset: plan.regionOfValue[id.index].map { plan.regions[$0].offset },
                bytes: v.shape.count * v.dtype.byteSize, store: store)
        }
        steps = plan.order.enumerated().map { i, index in
            let node = graph.nodes[index]
            return Step(
                index: i, name: node.name, kind: node.op.kind, fused: node.fused, phase: node.phase.rawValue,
                attributes: node.op.attributes, inputs: node.inputs.map(tensor), outputs: node.outputs.map(tensor))
        }
        let bytes = { (values: [Graph.Value]) in values.reduce(0) { $0 + $1.shape.count * $1.dtype.byteSize } }
        memory = Memory(
            arena_bytes: plan.arenaBytes, naive_bytes: plan.naiveBytes, lower_bound_bytes: plan.lowerBoundBytes,
            gradient_bytes: plan.gradientBytes, parameter_bytes: bytes(graph.parameters + graph.buffers),
            optimizer_state_bytes: bytes(graph.optimizerStates))
        params = graph.parameters.map { Param(name: $0.name, shape: $0.shape.dims, trainable: graph.isTrainable($0)) }
        let counts = plan.stepCounts
        self.counts = Counts(forward: counts[.forward] ?? 0, backward: counts[.backward] ?? 0, update: counts[.update] ?? 0)
    }

    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// One line per step: index, phase, kind, name [+ fused members], output shape, arena slot.
    public var text: String {
        func mib(_ b: Int) -> String { String(format: "%.1f MiB", Double(b) / 1_048_576) }
        // Column widths from the content, so long fused member lists stay aligned.
        func label(_ step: Step) -> String {
            step.fused == [step.name] ? step.name : step.name + " [+ " + step.fused.filter { $0 != step.name }.joined(separator: ", ") + "]"
        }
        let kindWidth = (steps.map(\.kind.count).max() ?? 4) + 2, nameWidth = (steps.map { label($0).count }.max() ?? 4) + 2
        let shapeWidth = (steps.map { Shape($0.outputs[0].shape).description.count }.max() ?? 6) + 2
        var lines = [
            "#".padRight(6) + "phase".padRight(10) + "kind".padRight(kindWidth) + "step [fused members]".padRight(nameWidth)
                + "output".padRight(shapeWidth) + "arena offset + size"
        ]
        for step in steps {
            let out = step.outputs[0]
            let slot =
                out.bytes == 0
                ? "— (in place on the parameter)"
                : out.offset.map { String(format: "%9.1f MiB + ", Double($0) / 1_048_576) + mib(out.bytes) } ?? out.store
            lines.append(
                String(step.index).padRight(6) + step.phase.padRight(10) + step.kind.padRight(kindWidth)
                    + label(step).padRight(nameWidth) + Shape(out.shape).description.padRight(shapeWidth) + slot)
        }
        lines += [
            "",
            "steps: \(counts.forward) forward, \(counts.backward) backward, \(counts.update) update",
            "arena: \(mib(memory.arena_bytes)) (naive \(mib(memory.naive_bytes)), lower bound \(mib(memory.lower_bound_bytes)); "
                + String(format: "%.2f× naive", Double(memory.arena_bytes) / Double(max(memory.naive_bytes, 1))) + ")",
            "parameters: \(mib(memory.parameter_bytes)), gradients: \(mib(memory.gradient_bytes)), optimizer state: \(mib(memory.optimizer_state_bytes))",
        ]
        return lines.joined(separator: "\n")
    }
}
