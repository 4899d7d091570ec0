import Foundation

/// Reads any supported weight file, choosing the format by content (not by extension):
/// PyTorch zip checkpoints, safetensors, TF.js model.json, .npz and legacy torch files (refused
/// with a clear message).
public enum WeightFile {
    public enum Format: String, Sendable { case torch, safetensors, tfjs, npz }

    public static func detect(_ url: URL) throws -> Format {
        guard let handle = try? FileHandle(forReadingFrom: url) else {
            throw CheckpointError(file: url.path, detail: "cannot open (does it exist?)")
        }
        defer { try? handle.close() }
        let head = [UInt8](handle.readData(ofLength: 16))
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || head.starts(with: [0x50, 0x4B, 0x05, 0x06]) {
            // A zip: a torch checkpoint has data.pkl, an npz .npy members. Only the names are read
            // here; the chosen reader parses the file once.
            let paths = try ZipMembers(url).paths
            if paths.contains(where: { $0.hasSuffix("data.pkl") }) { return .torch }
            if paths.contains(where: { $0.hasSuffix(".npy") }) { return .npz }
            throw CheckpointError(
                file: url.path, detail: "a zip archive with neither data.pkl (PyTorch checkpoint) nor .npy members (.npz)")
        }
        if head.starts(with: [0x80, 0x02]) { return .torch }  // legacy pickle: the torch reader explains
        if let first = head.first(where: { ![0x20, 0x0A, 0x0D, 0x09].contains($0) }), first == UInt8(ascii: "{") { return .tfjs }
        if head.count >= 9, head[8] == UInt8(ascii: "{") { return .safetensors }
        throw CheckpointError(
            file: url.path, detail: "unrecognised weight format (expected a PyTorch .pth, .safetensors, TF.js model.json or .npz)")
    }

    public static func read(_ url: URL) throws -> [(String, Tensor)] {
        switch try detect(url) {
        case .torch: try TorchCheckpoint.read(url)
        case .safetensors: try Safetensors.read(url).tensors
        case .tfjs: try TFJS.read(url)
        case .npz: try NPZ.read(url)
        }
    }
}

/// What `load` did: like PyTorch's load_state_dict report, plus what was skipped on purpose.
public struct LoadReport: Sendable, CustomStringConvertible {
    public var loaded: [String] = []
    public var missing: [String] = []
    public var unexpected: [String] = []
    public var mismatched: [(key: String, file: Shape, model: Shape)] = []
    /// Keys deliberately not loaded (the classifier, in non-strict mode).
    public var skipped: [String] = []
    /// A training checkpoint's optimizer state, not wanted by an inference or gradient load.
    public var optimizerState: [String] = []
    /// Whether mismatched tensors were skipped (non-strict) rather than refused.
    public var strict = true

    public var isClean: Bool { missing.isEmpty && unexpected.isEmpty && mismatched.isEmpty }

    /// At most a few names, then how many more: a mismatched file has hundreds.
    static func names(_ keys: [String], limit: Int = 5) -> String {
        keys.prefix(limit).joined(separator: ", ") + (keys.count > limit ? " (and \(keys.count - limit) more)" : "")
    }

    public var description: String {
        var lines = ["loaded \(loaded.count) tensors"]
        if !optimizerState.isEmpty { lines.append("ignored the optimizer state (\(optimizerState.count) tensors)") }
        if !skipped.isEmpty { lines.append("skipped (non-strict): \(Self.names(skipped))") }
        if !missing.isEmpty { lines.append("missing keys (\(missing.count)): \(Self.names(missing))") }
        if !unexpected.isEmpty { lines.append("unexpected keys (\(unexpected.count)): \(Self.names(unexpected))") }
        for m in mismatched.prefix(5) {
            lines.append("\(strict ? "size mismatch" : "skipped, shape differs") for \(m.key): file has \(m.file), model has \(m.model)")
        }
        if mismatched.count > 5 { lines.append("(and \(mismatched.count - 5) more size mismatches)") }
        return lines.joined(separator: "\n")
    }
}

public struct LoadError: Error, CustomStringConvertible {
    public let file: String
    public let report: LoadReport
    public var description: String {
        "\(file): weights do not match the model (\(report.strict ? "strict" : "non-strict") load)\n\(report)"
    }
}

extension ParameterStore {
    /// Copies matching tensors into the store.
    /// - Strict (default): every key of the graph must be present with its shape and nothing else
    ///   may be in the file, except a training checkpoint's `optimizer.` state (ignored unless
    ///   `optimizerState`, when resuming, asks for it).
    /// - Non-strict: tensors whose shape differs are skipped (left at their initial values) and
    ///   reported, keys the model lacks are reported and ignored, and `skipPrefixes` (the
    ///   classifier, for the seed's "replace fc with 21 outputs") are never loaded. Keys of the
    ///   model missing from the file are an error in both modes.
    /// Non-finite values are refused in both.
    @discardableResult
    public func load(
        _ tensors: [(String, Tensor)], for graph: Graph, file: String, strict: Bool = true,
        skipPrefixes: [String] = [], optimizerState: Bool = false
    ) throws -> LoadReport {
        var report = LoadReport()
        report.strict = strict
        let values = optimizerState ? graph.persistentValues : graph.stateValues
        let expected = Dictionary(uniqueKeysWithValues: values.map { ($0.name, $0) })
        let provided = Dictionary(tensors, uniquingKeysWith: { a, _ in a })
        let skip = { (key: String) in !strict && skipPrefixes.contains(where: { key.hasModulePrefix($0) }) }
        for (key, tensor) in tensors {
            guard let value = expected[key] else {
                if !optimizerState, key.hasPrefix("optimizer.") { report.optimizerState.append(key) } else { report.unexpected.append(key) }
                continue
            }
            if skip(key) { report.skipped.append(key); continue }
            guard tensor.shape == value.shape, tensor.dtype == value.dtype else {
                report.mismatched.append((key, tensor.shape, value.shape))
                continue
            }
            report.loaded.append(key)
        }
        for value in values where provided[value.name] == nil {
            if skip(value.name) { report.skipped.append(value.name) } else { report.missing.append(value.name) }
        }
        if strict ? !report.isClean : !report.missing.isEmpty { throw LoadError(file: file, report: report) }
        // A diverged run's weights are never trusted (nor written: see the trainer).
        for key in report.loaded {
            if let summary = provided[key]!.nonFiniteSummary {
                throw CheckpointError(
                    file: file, detail: "'\(key)': \(summary); refusing to load non-finite weights (from a diverged training run?)")
            }
        }
        addMissing(from: graph)
        for key in report.loaded { self[key]!.copy(from: provided[key]!) }
        return report
    }

    /// The state dict (parameters and buffers, declaration order) plus optimizer state.
    public func stateTensors(for graph: Graph, includeOptimizer: Bool = false) -> [(String, Tensor)] {
        let values = includeOptimizer ? graph.persistentValues : graph.stateValues
        return values.compactMap { v in self[v.name].map { (v.name, $0) } }
    }
}
