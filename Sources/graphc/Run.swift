import ArgumentParser
import Foundation
import Kiln
import KilnModels

/// Options for commands that load weights into a zoo model.
struct WeightOptions: ParsableArguments {
    @Option(
        help:
            "Weights: PyTorch .pth, .safetensors, TF.js model.json or .npz (format chosen by content), or imagenet for torchvision's ResNet-18 (downloaded into the torch hub cache). Default for resnet18: the cached file."
    )
    var weights: String?

    @Flag(
        help:
            "Skip tensors whose shape differs (left at their initial values, e.g. a 1000-class fc for 21 classes) and ignore keys the model lacks; both are reported."
    )
    var nonStrict = false

    /// The parameters for `graph`: an .onnx model's own weights (overridden by --weights when
    /// given), or a zoo model's from --weights.
    func parameters(for graph: Graph, model options: ModelOptions) throws -> ParameterStore {
        guard options.isONNX else {
            let store = ParameterStore(graph: graph)
            try load(into: store, graph: graph, model: options.model)
            return store
        }
        let store = try options.onnxModel().pretrainedParameters(for: graph, seed: 0)
        if weights != nil { try load(into: store, graph: graph, model: options.model) }
        return store
    }

    @discardableResult
    func load(into store: ParameterStore, graph: Graph, model: String) throws -> LoadReport {
        let url: URL
        let imagenet = ResNet18Weights.imagenet1kV1.published
        if weights == "imagenet" && model == "resnet18" {
            url = try WeightsHub.environment.fetch(imagenet, progress: WeightsHub.terminalProgress(imagenet))
        } else if let weights {
            url = URL(fileURLWithPath: weights)
        } else if model == "resnet18" {
            url = WeightsHub.environment.cachedFile(imagenet)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw CheckpointError(
                    file: url.path,
                    detail:
                        "no --weights given and torchvision's ResNet-18 is not in the torch hub cache (looked here; `--weights imagenet` downloads it)"
                )
            }
        } else {
            throw ValidationError("--weights is required for \(model)")
        }
        let tensors = try WeightFile.read(url)
        do {
            let report = try store.load(tensors, for: graph, file: url.path, strict: !nonStrict)
            // Say what a non-strict load left out; a clean load (optimizer state aside) is silent.
            if !report.isClean || !report.skipped.isEmpty { FileHandle.standardError.write(Data("\(url.path): \(report)\n".utf8)) }
            return report
        } catch let error as LoadError {
            throw Zoo.explain(error, model: model)
        }
    }
}

/// Which implementation computes: the compiled float32 plan, or the float64 reference evaluator.
enum Precision: String, ExpressibleByArgument, CaseIterable {
    case float32, float64
}

/// Reads the input images; in float64 mode a `<f8` file keeps its full precision.
func readImages(_ path: String, precision: Precision) throws -> (Tensor, Float64Tensor?) {
    let data = try NPY.contents(of: URL(fileURLWithPath: path))
    let x = try NPY.decode(data, file: path)
    guard x.dtype == .float32, x.shape.rank >= 1 else {
        throw ValidationError("\(path): expected float32 [N, 3, H, W] (or the ONNX model's input shape), got \(x.dtype) \(x.shape)")
    }
    if let summary = x.nonFiniteSummary { throw CheckpointError(file: path, detail: "input \(summary)") }
    guard precision == .float64 else { return (x, nil) }
    let (shape, values) = try NPY.decodeDoubles(data, file: path)
    return (x, Float64Tensor(shape: shape, values: values))
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Eval-mode forward pass: write logits (or pooled features, or any node's output) as .npy."
    )

    @OptionGroup var model: ModelOptions
    @OptionGroup var weights: WeightOptions

    @Option(help: "Input images as .npy, float32 [N, 3, H, W] (already normalised).")
    var input: String

    @Option(help: "Where to write the result (.npy).")
    var output: String

    @Flag(help: "Write the classifier's input (the pooled feature vector) instead of the logits.")
    var features = false

    @Option(help: "Write this node's output instead (a module path as in `graphc summary`; runs the unfused graph).")
    var outputNode: String?

    @Flag(help: "Run the graph without the fusion pass.")
    var unfused = false

    @Option(
        help:
            "float32: Kiln's compiled kernels; float64: the reference evaluator (unfused, nothing rounded to float32; results written as float32)."
    )
    var precision: Precision = .float32

    func run() throws {
        try fail {
            let (x, x64) = try readImages(input, precision: precision)
            if !model.isONNX, x.shape.rank != 4 || x.shape[1] != 3 {
                throw ValidationError("\(input): expected float32 [N, 3, H, W], got \(x.shape)")
            }
            let layers = try model.layers()
            let plain = try Graph.trace(layers, input: x.shape)
            let store = try weights.parameters(for: plain, model: model)

            var graph = try Compiler.inference(layers, input: x.shape, fuse: !(unfused || outputNode != nil || x64 != nil))
            var wanted = graph[graph.outputs["logits"]!].name
            if features {
                let name = try model.classifierNode()
                guard let classifier = plain.node(named: name) else { throw GraphError.unknownName(name) }
                wanted = plain[classifier.inputs[0]].name
                graph = try Compiler.inference(layers, input: x.shape, fuse: false)
            }
            if let outputNode { wanted = outputNode }
            _ = try graph.value(named: wanted)
            if let x64 {
                let result = try Float64Evaluator(graph: graph).run(["input": x64], parameters: store, mode: .inference, keep: [wanted])
                try NPY.write(result[wanted]!.float32(), to: URL(fileURLWithPath: output))
                return
            }
            let executor = try Executor(graph: graph, parameters: store, keep: [wanted], constantWeights: true)
            try executor.run(["input": x])
            try NPY.write(try executor.tensor(named: wanted), to: URL(fileURLWithPath: output))
        }
    }
}

struct Grad: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Training-mode forward (BN batch statistics), mean cross-entropy and the gradient of every trainable parameter, written as safetensors (`loss` + one tensor per state_dict key); in float64 unless --precision float32."
    )

    @OptionGroup var model: ModelOptions
    @OptionGroup var weights: WeightOptions

    @Option(help: "Input images as .npy, float32 [N, 3, H, W].") var input: String
    @Option(help: "Labels as .npy, int64 [N].") var labels: String
    @Option(help: "Where to write the gradients (.safetensors).") var output: String
    @Option(help: "Comma-separated module prefixes to freeze.") var freeze: String?
    @Option(help: "Comma-separated module prefixes to train (everything else frozen).") var trainOnly: String?
    @Option(help: "Frozen BN: running (running statistics, Keras) or batch (PyTorch with requires_grad=False).")
    var frozenBn: FrozenBatchNormOption = .running
    @Flag(help: "With --precision float32: run the graph without the fusion pass.") var unfused = false
    /// float64 by default, as torch.autograd.gradcheck: where a ReLU input lies within float32
    /// rounding of 0, float32 gradients of any two implementations (PyTorch's own fp32 and fp64
    /// included) differ discretely, so parity is judged on the exact gradient.
    @Option(
        help:
            "float64 (default): the reference evaluator, nothing rounded to float32 (gradients written as float32); float32: Kiln's compiled training kernels, as used by `landuse train`."
    )
    var precision: Precision = .float64

    enum FrozenBatchNormOption: String, ExpressibleByArgument { case running, batch }

    func run() throws {
        try fail {
            let (x, x64) = try readImages(input, precision: precision)
            let y = try NPY.read(URL(fileURLWithPath: labels))
            guard y.dtype == .int64, y.shape == [x.shape[0]] else {
                throw ValidationError("\(labels): expected int64 [\(x.shape[0])], got \(y.dtype) \(y.shape)")
            }
            let layers = try model.layers()
            let split = { (s: String?) in s?.split(separator: ",").map(String.init) }
            let graph = try Compiler.gradients(
                layers, input: x.shape, freeze: split(freeze) ?? [], trainOnly: split(trainOnly),
                frozenBatchNorm: frozenBn == .running ? .runningStatistics : .batchStatistics,
                fuse: !unfused && x64 == nil)
            let store = try weights.parameters(for: graph, model: model)
            let keep = Set(graph.gradients.values.map { graph[$0].name })
            let trained = graph.parameters.filter { graph.gradients[$0.name] != nil }
            var tensors: [(String, Tensor)]
            if let x64 {
                let result = try Float64Evaluator(graph: graph).run(
                    ["input": x64, "labels": Float64Tensor(y)], parameters: store,
                    mode: .training, keep: keep)
                tensors = [("loss", result["loss"]!.float32())]
                for parameter in trained {
                    tensors.append((parameter.name, result[graph[graph.gradients[parameter.name]!].name]!.float32()))
                }
            } else {
                let executor = try Executor(graph: graph, parameters: store, mode: .training, keep: keep)
                let outputs = try executor.run(["input": x, "labels": y])
                tensors = [("loss", outputs["loss"]!.clone())]
                for parameter in trained {
                    tensors.append((parameter.name, try executor.tensor(named: graph[graph.gradients[parameter.name]!].name)))
                }
            }
            try Safetensors.write(
                tensors, metadata: ["model": model.model, "content": "gradients", "precision": precision.rawValue],
                to: URL(fileURLWithPath: output))
        }
    }
}
