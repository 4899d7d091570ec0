import Foundation
import Kiln
import KilnData
import KilnModels

/// Where a trained network looks: Grad-CAM (Selvaraju et al. 2017) for the zoo's heads, which are
/// all global average pooling followed by one linear layer. There the gradient of class c's
/// score with respect to the last convolutional activations A is w_c / (H·W) at every location,
/// so Grad-CAM's channel weights are the classifier's row w_c (up to 1/(H·W)) and the map is
/// ReLU(Σ_k w_ck A_k) — CAM (Zhou et al. 2016), exact from one forward pass with no backward
/// pass. The raw map averages to the class's logit minus its bias (checked in the tests).
public final class ClassActivationMap {
    public struct Explanation: Sendable {
        public let predicted: Int
        public let probability: Double
        /// ReLU(Σ_k w_ck A_k) for the predicted class on the feature grid, scaled to [0, 1].
        public let heat: [Float]
        /// Σ_k w_ck A_k before the ReLU and the scaling (its mean + the bias is the logit).
        public let raw: [Float]
        public let width: Int
        public let height: Int
        /// The logits of the image.
        public let logits: [Float]
    }

    public let config: RunConfig
    public let classes: [String]
    /// The activations the map is made of (the last convolutional block's output).
    public let featureName: String
    let executor: Executor
    let weight: Tensor

    /// The trained model of a run folder (config.json, checkpoint.safetensors).
    public convenience init(runFolder: URL) throws {
        let config = try RunConfig.read(runFolder: runFolder)
        let checkpoint = runFolder.appendingPathComponent("checkpoint.safetensors")
        let (tensors, metadata) = try Safetensors.read(checkpoint)
        guard let classes = metadata["classes"]?.split(separator: ",").map(String.init) else {
            throw StudyError("\(checkpoint.path): no class names in the checkpoint metadata")
        }
        try self.init(config: config, classes: classes, tensors: tensors, file: checkpoint.path)
    }

    public init(config: RunConfig, classes: [String], tensors: [(String, Tensor)], file: String) throws {
        (self.config, self.classes) = (config, classes)
        let model = try Zoo.model(config.model, classes: classes.count, width: config.width)
        let graph = try Compiler.inference(model, input: [1, 3, config.inputSize, config.inputSize], fuse: false)
        let store = ParameterStore()
        try store.load(tensors, for: graph, file: file)
        featureName = try Self.lastFeatureMap(graph, classifier: config.classifier)
        guard let weight = store["\(config.classifier).weight"] else { throw StudyError("\(file): no \(config.classifier).weight") }
        self.weight = weight
        executor = try Executor(graph: graph, parameters: store, keep: [featureName], constantWeights: true)
    }

    /// The value the classifier's pooled input comes from: walking back from the classifier
    /// through flatten, reshape and global pooling to the feature map they reduce.
    static func lastFeatureMap(_ graph: Graph, classifier: String) throws -> String {
        // The classifier is the node reading its weight (an imported graph names nodes otherwise).
        guard let weight = try? graph.value(named: "\(classifier).weight"), var node = graph.readers(of: weight.id).first else {
            throw GraphError.unknownName("\(classifier).weight")
        }
        while true {
            let value = graph[node.inputs[0]]
            guard let producer = value.producer, ["Flatten", "Reshape", "AdaptiveAvgPool2d"].contains(graph.nodes[producer].op.kind) else {
                guard value.shape.rank == 4, value.shape[2] * value.shape[3] > 1 else {
                    throw StudyError(
                        "\(classifier): the classifier does not read a pooled feature map larger than 1×1 (\(value.name) is \(value.shape); use a larger input)"
                    )
                }
                return value.name
            }
            node = graph.nodes[producer]
        }
    }

    /// The map of the predicted class for an image already cropped and normalised for the model.
    public func explain(_ input: FloatImage) throws -> Explanation {
        let tensor = Tensor(zeros: [1, 3, config.inputSize, config.inputSize])
        input.writeCHW(to: tensor.floats)
        let logits = try executor.run(["input": tensor])["logits"]!.scalars
        let features = try executor.tensor(named: featureName)
        let (channels, height, width) = (features.shape[1], features.shape[2], features.shape[3])
        let predicted = logits.indices.max { logits[$0] < logits[$1] }!
        let top = Double(logits[predicted])
        let probability = 1 / logits.reduce(0.0) { $0 + exp(Double($1) - top) }
        var raw = [Float](repeating: 0, count: height * width)
        for k in 0..<channels {
            let w = weight.floats[predicted * channels + k]
            for p in 0..<(height * width) { raw[p] += w * features.floats[k * height * width + p] }
        }
        let peak = raw.max() ?? 0
        let heat = raw.map { peak > 0 ? max($0, 0) / peak : 0 }
        return Explanation(
            predicted: predicted, probability: probability, heat: heat, raw: raw, width: width, height: height, logits: logits)
    }

    /// Reads, crops and normalises an image as evaluation does; also returns the crop itself.
    public func prepare(_ image: RGBImage) -> (input: FloatImage, crop: FloatImage) {
        var rng = SplitMix(seed: 0)
        let crop = [Transform.resize(config.baseSize), .centerCrop(config.inputSize)].reduce(FloatImage(image)) { $1.apply($0, rng: &rng) }
        return (config.normalization.apply(crop, rng: &rng), crop)
    }

    /// The crop with the heat map laid over it (viridis, 45% opacity), as 8-bit RGB.
    public static func overlay(_ crop: FloatImage, _ explanation: Explanation) -> RGBImage {
        var rng = SplitMix(seed: 0)
        let grid = FloatImage(width: explanation.width, height: explanation.height, pixels: explanation.heat.flatMap { [$0, $0, $0] })
        let heat = Transform.resizeTo(width: crop.width, height: crop.height).apply(grid, rng: &rng)
        var pixels = [UInt8](repeating: 0, count: crop.width * crop.height * 3)
        for p in 0..<(crop.width * crop.height) {
            let color = viridis(heat.pixels[3 * p])
            for c in 0..<3 {
                let v = 0.55 * crop.pixels[3 * p + c] + 0.45 * color[c]
                pixels[3 * p + c] = UInt8(min(255, max(0, (v * 255).rounded())))
            }
        }
        return RGBImage(width: crop.width, height: crop.height, pixels: pixels)
    }

    /// Viridis (perceptually uniform, colour-blind safe) through five of its stops.
    static func viridis(_ t: Float) -> [Float] {
        let stops: [[Float]] = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]
        let x = min(max(t, 0), 1) * Float(stops.count - 1)
        let i = min(Int(x), stops.count - 2), f = x - Float(i)
        return (0..<3).map { (stops[i][$0] * (1 - f) + stops[i + 1][$0] * f) / 255 }
    }
}
