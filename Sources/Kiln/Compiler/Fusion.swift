/// The fusion pass: Conv → BatchNorm [→ Add] [→ ReLU | ReLU6] chains become one `FusedConvBNOp`
/// step, and Conv [→ Add] → ReLU | ReLU6 chains without a BatchNorm (BN folded by an exporter) one
/// `FusedConvActivationOp` step, when every intermediate has exactly one reader and is not a
/// graph output. The fused node
/// takes the conv's name, its result the name of the chain's last node, and `fused` lists the
/// members. It sits where the chain's last node was, so the residual is ready when it runs.
enum FusionPass {
    struct Chain {
        var conv: Graph.Node
        var bn: Graph.Node?
        var add: Graph.Node?
        var residual: Graph.ValueID?
        var activation: Graph.Node?
        var members: [Graph.Node] { [conv] + [bn, add, activation].compactMap { $0 } }
        var last: Graph.Node { members.last! }
    }

    static func apply(_ graph: Graph) throws -> Graph {
        let chains = findChains(graph)
        var chainOfLast: [Int: Chain] = [:]
        var absorbed = Set<Int>()
        for chain in chains {
            chainOfLast[chain.last.index] = chain
            absorbed.formUnion(chain.members.dropLast().map(\.index))
        }

        var rewrite = try GraphRewrite(graph)
        for node in graph.nodes where !absorbed.contains(node.index) {
            guard let chain = chainOfLast[node.index] else {
                try rewrite.copy(node)
                continue
            }
            let op: any Primitive
            var inputs = chain.conv.inputs
            var names = [chain.last.name]
            if let bn = chain.bn {
                let fused = fusedOp(chain, graph, bn: bn)
                inputs += bn.inputs.dropFirst()
                if !fused.bn.usesRunningStatistics { names += [chain.conv.name, "\(chain.conv.name):scale_shift"] }
                op = fused
            } else {
                op = FusedConvActivationOp(
                    conv: chain.conv.op as! Conv2DOp, hasBias: chain.conv.inputs.count == 3, hasResidual: chain.add != nil,
                    activation: activation(chain))
            }
            if let residual = chain.residual { inputs.append(residual) }
            let out = try rewrite.result.addNode(
                name: chain.conv.name, op: op, inputs: inputs.map(rewrite.mapped), phase: node.phase,
                fused: chain.members.flatMap(\.fused), outputNames: names)
            rewrite.map[chain.last.output.index] = out
        }
        return rewrite.finish()
    }

    static func findChains(_ graph: Graph) -> [Chain] {
        let soleReader = graph.soleReader(of:)
        var chains: [Chain] = []
        var claimed = Set<Int>()  // an Add joins the first chain that reaches it (the residual's chain ends before it)
        for conv in graph.nodes where conv.op is Conv2DOp && conv.phase == .forward {
            var chain = Chain(conv: conv)
            var tail = conv.output
            if let bn = soleReader(conv.output), bn.op is BatchNormOp, bn.inputs[0] == conv.output {
                chain.bn = bn
                tail = bn.output
            }
            if let add = soleReader(tail), add.op is AddOp, add.inputs[0] != add.inputs[1], !claimed.contains(add.index) {
                chain.add = add
                chain.residual = add.inputs[0] == tail ? add.inputs[1] : add.inputs[0]
                tail = add.output
            }
            if let act = soleReader(tail), EpilogueActivation(fusing: act.op) != nil {
                chain.activation = act
            }
            // Without a BatchNorm, only an epilogue (residual or activation) makes fusing worth it.
            guard chain.bn != nil || chain.activation != nil else { continue }
            claimed.formUnion(chain.members.map(\.index))
            chains.append(chain)
        }
        return chains
    }

    static func activation(_ chain: Chain) -> EpilogueActivation {
        chain.activation.flatMap { EpilogueActivation(fusing: $0.op) } ?? .none
    }

    static func fusedOp(_ chain: Chain, _ graph: Graph, bn: Graph.Node) -> FusedConvBNOp {
        FusedConvBNOp(
            conv: chain.conv.op as! Conv2DOp, bn: bn.op as! BatchNormOp,
            hasConvBias: chain.conv.inputs.count == 3, hasResidual: chain.add != nil, activation: activation(chain))
    }
}
