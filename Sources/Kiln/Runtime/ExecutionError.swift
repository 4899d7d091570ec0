/// Errors raised while running a plan. Each names the node, so a failure deep in a training step
/// points at the layer that caused it.
public enum ExecutionError: Error, Equatable, CustomStringConvertible {
    /// A kernel (or the arena) could not get the memory it needed.
    case outOfMemory(node: String, bytes: Int)
    /// A node's output holds NaN or ±infinity.
    case nonFinite(node: String, detail: String)
    /// A parameter, buffer or optimizer slot holds NaN or ±infinity (an update diverged).
    case nonFiniteParameter(name: String, detail: String)

    public var description: String {
        switch self {
        case let .outOfMemory(node, bytes):
            "out of memory at node '\(node)': \(bytes) bytes (\(String(format: "%.1f", Double(bytes) / 1_048_576)) MiB) could not be allocated"
        case let .nonFinite(node, detail): "non-finite values at node '\(node)': \(detail)"
        case let .nonFiniteParameter(name, detail): "non-finite values in parameter '\(name)' after an optimizer update: \(detail)"
        }
    }
}
