/// Checks a plan before it runs (tests and debug builds): no two regions alive at the same step
/// overlap in the arena, every region fits in it, every value is written before it is read, and
/// in-place chains only continue where the op allows it and the previous value has died.
public enum PlanVerifier {
    public struct Violation: Error, CustomStringConvertible {
        public let detail: String
        public var description: String { "invalid plan: \(detail)" }
    }

    public static func verify(_ plan: Plan) throws {
        let graph = plan.graph
        let position = plan.positions
        for (i, a) in plan.regions.enumerated() {
            guard a.offset >= 0, a.offset + a.bytes <= plan.arenaBytes else {
                throw Violation(
                    detail:
                        "region of '\(graph[a.values[0]].name)' [\(a.offset), +\(a.bytes)) lies outside the \(plan.arenaBytes)-byte arena")
            }
            for b in plan.regions[(i + 1)...] where a.start <= b.end && b.start <= a.end {
                if a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes {
                    throw Violation(
                        detail:
                            "'\(graph[a.values[0]].name)' and '\(graph[b.values[0]].name)' are alive together (steps \(a.start)…\(a.end) and \(b.start)…\(b.end)) but share arena bytes"
                    )
                }
            }
            for (previous, next) in zip(a.values, a.values.dropFirst()) {
                guard let producer = graph[next].producer,
                    graph.nodes[producer].inputs.firstIndex(of: previous) == graph.nodes[producer].op.inPlaceInput
                else {
                    throw Violation(detail: "'\(graph[next].name)' reuses the buffer of '\(graph[previous].name)' without an in-place op")
                }
                let readers = graph.readers(of: previous).map { position[$0.index]! }
                guard readers.allSatisfy({ $0 <= position[producer]! }) else {
                    throw Violation(detail: "'\(graph[next].name)' overwrites '\(graph[previous].name)' while it is still to be read")
                }
            }
        }
        for index in plan.order {
            let node = graph.nodes[index]
            for input in node.inputs {
                if let producer = graph[input].producer, position[producer]! >= position[index]! {
                    throw Violation(detail: "'\(node.name)' reads '\(graph[input].name)' before it is written")
                }
            }
        }
    }
}
