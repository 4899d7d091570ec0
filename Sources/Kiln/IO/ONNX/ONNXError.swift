/// An ONNX file Kiln cannot import: names the file, and the node, op and opset where one is involved.
public struct ONNXError: Error, CustomStringConvertible {
    public let file: String
    public let node: String?
    public let op: String?
    public let detail: String

    public init(file: String, node: String? = nil, op: String? = nil, detail: String) {
        (self.file, self.node, self.op, self.detail) = (file, node, op, detail)
    }

    public var description: String {
        var location = file
        if let node { location += ": node '\(node)'" }
        if let op { location += " (\(op))" }
        return "\(location): \(detail)"
    }
}
