/// A layer that comes with published weights (e.g. KilnModels' `ResNet18(weights: .imagenet1kV1)`):
/// a TrainStep given no parameters starts from them.
public protocol PretrainedLayer: Layer {
    /// The published weights loaded for `graph` (fetched first if need be); values the weights do
    /// not cover, or cover with another shape (a classifier for other classes), are initialised
    /// from `seed`.
    func pretrainedParameters(for graph: Graph, seed: UInt64) throws -> ParameterStore
}
