/// Parameters and buffers of a model by state_dict key, independent of any compiled plan, so
/// one store can serve several graphs (batch sizes, train and eval).
public final class ParameterStore: @unchecked Sendable {
    public private(set) var tensors: [String: Tensor] = [:]
    /// Keys in declaration order (the order of torch's state_dict).
    public private(set) var keys: [String] = []

    public init() {}

    /// Creates every parameter and buffer of `graph` with its layer's default initialiser. Each
    /// tensor's seed derives from (seed, key): adding a layer does not reshuffle the others.
    public convenience init(graph: Graph, seed: UInt64 = 0) {
        self.init()
        addMissing(from: graph, seed: seed)
    }

    /// Creates the persistent values of `graph` this store lacks (e.g. optimiser state when a
    /// train step is compiled over an existing store), each with its initialiser.
    public func addMissing(from graph: Graph, seed: UInt64 = 0) {
        for value in graph.persistentValues where tensors[value.name] == nil {
            let t = Tensor(zeros: value.shape, dtype: value.dtype)
            if value.dtype == .float32, let initializer = value.initializer {
                initializer.fill(t, seed: seed ^ fnv1a(value.name))
            }
            set(value.name, t)
        }
    }

    public subscript(key: String) -> Tensor? { tensors[key] }

    public func set(_ key: String, _ tensor: Tensor) {
        if tensors[key] == nil { keys.append(key) }
        tensors[key] = tensor
    }

    /// Checks that every state value of `graph` is present with the right shape.
    public func validate(against graph: Graph) throws {
        for value in graph.persistentValues {
            guard let t = tensors[value.name] else { throw GraphError.unknownName(value.name) }
            guard t.shape == value.shape, t.dtype == value.dtype else {
                throw GraphError.invalid(
                    "parameter '\(value.name)' has shape \(t.shape) \(t.dtype), graph expects \(value.shape) \(value.dtype)")
            }
        }
    }
}

/// FNV-1a: a stable string hash (Swift's Hasher is seeded per process).
public func fnv1a(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in s.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return h
}
