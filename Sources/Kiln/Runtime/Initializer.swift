import CKernels

/// How a parameter or buffer is initialised; matches torch.nn.init's defaults per layer type.
public enum Initializer: Sendable, Equatable {
    case zeros
    case ones
    case constant(Float)
    /// Kaiming normal, mode fan_out, ReLU gain (torchvision's conv init).
    case kaimingNormalFanOut(fanOut: Int)
    /// U(-1/sqrt(fanIn), 1/sqrt(fanIn)): nn.Linear's and nn.Conv2d's default for weight and bias.
    case uniformFanIn(fanIn: Int)
    case normal(std: Float)

    func fill(_ tensor: Tensor, seed: UInt64) {
        let n = Int64(tensor.count)
        switch self {
        case .zeros: kn_fill_constant(tensor.floats, n, 0)
        case .ones: kn_fill_constant(tensor.floats, n, 1)
        case let .constant(v): kn_fill_constant(tensor.floats, n, v)
        case let .kaimingNormalFanOut(fanOut):
            kn_fill_normal(tensor.floats, n, 0, (2.0 / Float(max(fanOut, 1))).squareRoot(), seed)
        case let .uniformFanIn(fanIn):
            let bound = 1 / Float(max(fanIn, 1)).squareRoot()
            kn_fill_uniform(tensor.floats, n, -bound, bound, seed)
        case let .normal(std): kn_fill_normal(tensor.floats, n, 0, std, seed)
        }
    }
}
