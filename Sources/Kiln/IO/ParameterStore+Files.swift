import Foundation

extension ParameterStore {
    /// The weights of `graph` from a file: PyTorch .pth, safetensors, TF.js model.json or .npz,
    /// the format chosen by content. Strict by default, as `load_state_dict`; see
    /// `load(_:for:file:strict:skipPrefixes:optimizerState:)` for non-strict loading.
    ///
    ///     let graph = try Graph.trace(MyNet(), input: [1, 3, 64, 64])
    ///     let store = try ParameterStore(contentsOf: URL(fileURLWithPath: "mynet.safetensors"), for: graph)
    public convenience init(contentsOf url: URL, for graph: Graph, strict: Bool = true) throws {
        self.init()
        try load(WeightFile.read(url), for: graph, file: url.path, strict: strict)
    }

    /// Writes the state dict of `graph` (parameters and buffers, in declaration order): as a
    /// PyTorch checkpoint when the name ends in .pth or .pt (`torch.load` layout), else as
    /// safetensors with `metadata`. Atomic; refuses non-finite values.
    public func save(to url: URL, for graph: Graph, metadata: [String: String] = [:]) throws {
        let tensors = stateTensors(for: graph)
        for (key, tensor) in tensors {
            if let summary = tensor.nonFiniteSummary {
                throw CheckpointError(file: url.path, detail: "'\(key)': \(summary); refusing to save non-finite weights")
            }
        }
        if ["pth", "pt"].contains(url.pathExtension.lowercased()) {
            try TorchCheckpoint.write(tensors, to: url)
        } else {
            try Safetensors.write(tensors, metadata: metadata, to: url)
        }
    }
}
