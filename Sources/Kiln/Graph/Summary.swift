import Foundation

/// torchsummary's table for a traced graph: one row per node (type-index, module path, output
/// shape with the batch shown as -1, parameter count), then the totals and size estimates.
public struct GraphSummary {
    public struct Row {
        public let layer: String
        public let name: String
        public let outputShape: Shape
        public let params: Int
    }

    public let rows: [Row]
    public let totalParams: Int
    public let trainableParams: Int
    public let inputBytes: Int
    public let activationBytes: Int

    public init(_ graph: Graph) {
        rows = graph.nodes.enumerated().map { i, node in
            let params = node.inputs.map { graph[$0] }.filter { $0.role == .parameter }.reduce(0) { $0 + $1.shape.count }
            return Row(layer: "\(node.op.kind)-\(i + 1)", name: node.name, outputShape: graph[node.output].shape, params: params)
        }
        totalParams = graph.parameters.reduce(0) { $0 + $1.shape.count }
        trainableParams = graph.parameters.filter { graph.isTrainable($0) }.reduce(0) { $0 + $1.shape.count }
        inputBytes = graph.inputs.filter { $0.dtype == .float32 }.reduce(0) { $0 + $1.shape.count * 4 }
        activationBytes = graph.nodes.reduce(0) { $0 + graph[$1.output].shape.count * 4 }
    }

    public var table: String {
        let rule = String(repeating: "-", count: 100), double = String(repeating: "=", count: 100)
        func row(_ a: String, _ b: String, _ c: String, _ d: String) -> String {
            a.padLeft(24) + "  " + b.padRight(34) + c.padLeft(24) + d.padLeft(16)
        }
        var lines = [rule, row("Layer (type)", "Module", "Output Shape", "Param #"), double]
        for r in rows {
            let shape = Shape([-1] + r.outputShape.dims.dropFirst())
            lines.append(row(r.layer, r.name, shape.description, r.params.grouped))
        }
        let mb = { (bytes: Int) in String(format: "%.2f", Double(bytes) / 1_048_576) }
        let paramBytes = totalParams * 4
        lines += [
            double,
            "Total params: \(totalParams.grouped)",
            "Trainable params: \(trainableParams.grouped)",
            "Non-trainable params: \((totalParams - trainableParams).grouped)",
            rule,
            "Input size (MB): \(mb(inputBytes))",
            "Forward/backward pass size (MB): \(mb(2 * activationBytes))",
            "Params size (MB): \(mb(paramBytes))",
            "Estimated Total Size (MB): \(mb(inputBytes + 2 * activationBytes + paramBytes))",
            rule,
        ]
        return lines.joined(separator: "\n")
    }
}

extension Int {
    /// 11689512 → "11,689,512".
    public var grouped: String {
        let digits = String(magnitude)
        var out = ""
        for (i, ch) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return (self < 0 ? "-" : "") + out
    }
}

extension String {
    public func padLeft(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
    public func padRight(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
