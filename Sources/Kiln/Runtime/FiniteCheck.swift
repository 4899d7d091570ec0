import CKernels

extension Tensor {
    /// nil when every value is finite (int64 tensors always are); otherwise how many values are
    /// NaN or infinite and the first of them.
    public var nonFiniteSummary: String? {
        guard dtype == .float32 else { return nil }
        var first: Int64 = -1
        let bad = kn_count_nonfinite(floats, Int64(count), &first)
        guard bad > 0 else { return nil }
        return "\(bad) of \(count) values are NaN or infinite (the first, at index \(first), is \(floats[Int(first)]))"
    }
}

extension ParameterStore {
    /// The first parameter, buffer or optimizer slot of `graph` (declaration order) holding a
    /// non-finite value, as an error naming it.
    public func firstNonFinite(in graph: Graph) -> ExecutionError? {
        for value in graph.persistentValues {
            if let tensor = self[value.name], let summary = tensor.nonFiniteSummary {
                return .nonFiniteParameter(name: value.name, detail: summary)
            }
        }
        return nil
    }
}
