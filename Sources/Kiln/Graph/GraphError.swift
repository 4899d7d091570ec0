/// Errors raised while building or validating a graph. Each names the node (its full module path)
/// and the shapes involved, so a model author can find the mistake without a debugger.
public enum GraphError: Error, Equatable, CustomStringConvertible {
    /// An op rejected its input shapes.
    case shapeMismatch(node: String, op: String, detail: String)
    /// Two nodes or parameters got the same name.
    case duplicateName(String)
    /// A named value, node or parameter does not exist.
    case unknownName(String)
    /// The graph is structurally invalid (e.g. a node reads a value defined after it).
    case invalid(String)

    public var description: String {
        switch self {
        case let .shapeMismatch(node, op, detail): "shape error at node '\(node)' (\(op)): \(detail)"
        case let .duplicateName(name): "duplicate name '\(name)' in graph"
        case let .unknownName(name): "no value, node or parameter named '\(name)'"
        case let .invalid(detail): "invalid graph: \(detail)"
        }
    }
}

/// Thrown by an op's shape rule; the graph builder adds the node name.
public struct ShapeRuleError: Error {
    public let detail: String
    public init(_ detail: String) { self.detail = detail }
}
