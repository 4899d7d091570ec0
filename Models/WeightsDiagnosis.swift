import Kiln

/// Why a weights file does not fit a model, in a few lines: which zoo model the file's keys look
/// like, then the first missing and unexpected keys (not the hundreds a wrong file lists).
public struct WeightsMismatch: Error, CustomStringConvertible {
    public let file: String
    public let model: String
    /// The zoo model whose keys the file holds most of, and how many of them.
    public let lookalike: (name: String, matched: Int, total: Int)?
    public let report: LoadReport

    public var description: String {
        var head = "\(file): these weights do not fit \(model)"
        if let lookalike, lookalike.matched > 0 {
            head +=
                lookalike.name == model
                ? " — they are a \(model) state dict, but some tensors differ in shape (another width or number of classes? --non-strict skips them)"
                : " — the file looks like a \(lookalike.name) (it holds \(lookalike.matched) of its \(lookalike.total) keys), not a \(model)"
        }
        return head + "\n" + report.description
    }
}

extension Zoo {
    /// Explains a failed load of `file` into `model`.
    public static func explain(_ error: LoadError, model: String) -> WeightsMismatch {
        let r = error.report
        let keys = Set(r.loaded + r.unexpected + r.mismatched.map(\.key) + r.skipped + r.optimizerState)
        return WeightsMismatch(file: error.file, model: model, lookalike: closestModel(to: keys), report: r)
    }

    /// The zoo model whose state-dict keys `keys` shares most of (names do not depend on width or classes).
    public static func closestModel(to keys: Set<String>) -> (name: String, matched: Int, total: Int)? {
        entries.compactMap { entry -> (name: String, matched: Int, total: Int)? in
            guard let graph = try? Graph.trace(entry.make(10, nil, nil), input: [1, 3, 96, 96]) else { return nil }
            let names = graph.stateValues.map(\.name)
            return (entry.name, names.filter(keys.contains).count, names.count)
        }.max { Double($0.matched) / Double($0.total) < Double($1.matched) / Double($1.total) }
    }
}
