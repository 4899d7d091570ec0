/// Floating-point operations of a forward pass (multiply and add counted separately, so a
/// multiply-accumulate is 2 FLOPs, the convention behind "ResNet-18 = 3.63 GFLOP/image").
public enum FlopCounter {
    public static func forward(_ graph: Graph) -> Double {
        graph.nodes.reduce(0.0) { total, node in
            let out = graph[node.output].shape
            switch node.op {
            case is Conv2DOp:
                let w = graph[node.inputs[1]].shape
                return total + 2 * Double(out.count) * Double(w[1] * w[2] * w[3])
            case is LinearOp:
                return total + 2 * Double(out.count) * Double(graph[node.inputs[1]].shape[1])
            default:
                return total + Double(out.count)
            }
        }
    }
}
