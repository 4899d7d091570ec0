import Foundation
import Kiln

/// A weights file published by a model's authors, as torchvision lists them: fetched once into
/// torch hub's cache (`WeightsHub`), verified by the SHA-256 prefix its file name carries.
public struct PublishedWeights: Sendable, Hashable, CustomStringConvertible {
    /// torchvision's name, e.g. `ResNet18_Weights.IMAGENET1K_V1`.
    public let name: String
    /// Where the authors publish it.
    public let url: URL
    /// The module names of the classifier (left at its initial values when the class count differs).
    public let classifier: String
    /// Classes the weights were trained for.
    public let classes: Int

    public init(name: String, url: URL, classifier: String, classes: Int) {
        (self.name, self.url, self.classifier, self.classes) = (name, url, classifier, classes)
    }

    /// `resnet18-f37072fd.pth`.
    public var fileName: String { url.lastPathComponent }

    /// The hex digits after the file name's last "-" (torch hub's `check_hash` convention).
    public var sha256Prefix: String {
        let stem = (fileName as NSString).deletingPathExtension
        return stem.split(separator: "-").last.map(String.init) ?? ""
    }

    public var description: String { "\(name) (\(fileName))" }
}

/// torchvision's `ResNet18_Weights`.
public enum ResNet18Weights: String, Sendable, CaseIterable {
    /// ImageNet-1k, 69.758% top-1 (torchvision's original ResNet-18 weights).
    case imagenet1kV1

    public var published: PublishedWeights {
        switch self {
        case .imagenet1kV1:
            PublishedWeights(
                name: "ResNet18_Weights.IMAGENET1K_V1", url: URL(string: "https://download.pytorch.org/models/resnet18-f37072fd.pth")!,
                classifier: "fc", classes: 1000)
        }
    }
}

/// A zoo model with published weights, as `torchvision.models.resnet18(weights=…)` returns:
/// TrainStep starts from them (fetched on first use), with a fresh classifier when `classes`
/// differs from the weights'. For an Executor, pass `pretrainedParameters(for:seed:)`.
public struct PretrainedModel: PretrainedLayer {
    public let model: Sequential
    public let weights: PublishedWeights
    /// Where the weights are cached and fetched from.
    public var hub: WeightsHub = .environment

    public init(model: Sequential, weights: PublishedWeights, hub: WeightsHub = .environment) {
        (self.model, self.weights, self.hub) = (model, weights, hub)
    }

    public func build(_ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID { try model.build(x, in: g) }

    public func pretrainedParameters(for graph: Graph, seed: UInt64) throws -> ParameterStore {
        let file = try hub.fetch(weights)
        let store = ParameterStore(graph: graph, seed: seed)
        try store.load(
            try WeightFile.read(file), for: graph, file: file.path, strict: false, skipPrefixes: [weights.classifier])
        return store
    }
}

/// ResNet-18 starting from published weights: `ResNet18(classes: 21, weights: .imagenet1kV1)`.
public func ResNet18(classes: Int = 1000, weights: ResNet18Weights) -> PretrainedModel {
    PretrainedModel(model: ResNet18(classes: classes), weights: weights.published)
}
