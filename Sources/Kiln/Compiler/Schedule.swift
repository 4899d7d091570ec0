/// Execution order of a compiled step. Forward and backward nodes keep the graph's order (autodiff
/// already emits backward in reverse, so activations die as early as the graph allows); each
/// optimizer update moves up to just after the last node that reads its parameter or produces its
/// gradient, so gradients and parameters are never read after being overwritten and a gradient's
/// buffer is free as early as possible.
enum Schedule {
    static func order(_ graph: Graph) -> [Int] {
        func lastReader(_ value: Graph.ValueID) -> Int {
            graph.readers(of: value).last { $0.phase != .update }?.index ?? -1
        }
        var updatesAfter: [Int: [Int]] = [:]
        var regular: [Int] = []
        for node in graph.nodes {
            guard node.phase == .update else { regular.append(node.index); continue }
            let after =
                node.inputs.map { input -> Int in
                    max(lastReader(input), graph[input].producer ?? -1)
                }.max() ?? -1
            updatesAfter[after, default: []].append(node.index)
        }
        var order = updatesAfter[-1] ?? []
        for index in regular {
            order.append(index)
            order += updatesAfter[index] ?? []
        }
        return order
    }
}
