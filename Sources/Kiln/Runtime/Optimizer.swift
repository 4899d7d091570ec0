import CKernels
import Foundation

/// Optimisers as update nodes of the compiled step; each follows torch.optim's algorithm.
public enum Optimizer: Sendable {
    case sgd(SGD)
    case adam(Adam)

    public struct SGD: Sendable {
        public var learningRate: Float
        public var momentum: Float = 0
        public var dampening: Float = 0
        public var weightDecay: Float = 0
        public var nesterov = false
        public init(learningRate: Float, momentum: Float = 0, dampening: Float = 0, weightDecay: Float = 0, nesterov: Bool = false) {
            (self.learningRate, self.momentum, self.dampening, self.weightDecay, self.nesterov) = (
                learningRate, momentum, dampening, weightDecay, nesterov
            )
        }
    }

    /// Adam, or AdamW when `decoupledWeightDecay` (torch.optim.AdamW: p ← p·(1 − lr·wd)).
    public struct Adam: Sendable {
        public var learningRate: Float = 1e-3
        public var beta1: Float = 0.9
        public var beta2: Float = 0.999
        public var eps: Float = 1e-8
        public var weightDecay: Float = 0
        public var decoupledWeightDecay = false
        public init(
            learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
            weightDecay: Float = 0, decoupledWeightDecay: Bool = false
        ) {
            (self.learningRate, self.beta1, self.beta2, self.eps) = (learningRate, beta1, beta2, eps)
            (self.weightDecay, self.decoupledWeightDecay) = (weightDecay, decoupledWeightDecay)
        }
    }

    public static func adamW(learningRate: Float = 1e-3, weightDecay: Float = 1e-2) -> Optimizer {
        .adam(Adam(learningRate: learningRate, weightDecay: weightDecay, decoupledWeightDecay: true))
    }

    public var learningRate: Float {
        switch self {
        case let .sgd(s): s.learningRate
        case let .adam(a): a.learningRate
        }
    }

    /// Per-parameter state tensors, named `optimizer.<param>.<slot>` (torch's state keys).
    var slots: [String] {
        switch self {
        case let .sgd(s): s.momentum != 0 ? ["momentum_buffer"] : []
        case .adam: ["exp_avg", "exp_avg_sq"]
        }
    }

    var update: any Primitive {
        switch self {
        case let .sgd(s): SGDUpdateOp(config: s)
        case let .adam(a): AdamUpdateOp(config: a)
        }
    }

    /// Appends one update node per trainable parameter (phase update), reading its gradient.
    func appendUpdates(to graph: inout Graph) throws {
        for parameter in graph.parameters where graph.isTrainable(parameter) {
            guard let grad = graph.gradients[parameter.name] else { throw GraphError.unknownName("gradient of \(parameter.name)") }
            var inputs = [parameter.id, grad]
            for slot in slots {
                inputs.append(
                    try graph.addValue(
                        name: "optimizer.\(parameter.name).\(slot)", shape: parameter.shape,
                        dtype: .float32, role: .optimizerState, initializer: .zeros))
            }
            _ = try graph.addNode(name: "\(parameter.name).update", op: update, inputs: inputs, phase: .update)
        }
    }
}

/// Learning-rate schedules, by epoch (as torch.optim.lr_scheduler stepped once per epoch).
public enum LRSchedule: Sendable {
    case constant
    /// StepLR: lr · gamma^(epoch / stepSize).
    case step(stepSize: Int, gamma: Float)
    /// CosineAnnealingLR: etaMin + (lr − etaMin)(1 + cos(π·epoch/tMax))/2.
    case cosine(tMax: Int, etaMin: Float)

    public func learningRate(base: Float, epoch: Int) -> Float {
        switch self {
        case .constant: return base
        case let .step(size, gamma): return base * pow(gamma, Float(epoch / max(size, 1)))
        case let .cosine(tMax, etaMin):
            let t = Double(min(epoch, tMax)) / Double(max(tMax, 1))
            return etaMin + (base - etaMin) * Float((1 + cos(Double.pi * t)) / 2)
        }
    }
}

/// In-place SGD step. Inputs: param, grad[, momentum_buffer]. The output is an empty token.
struct SGDUpdateOp: Primitive {
    let config: Optimizer.SGD
    var kind: String { "SGDUpdate" }
    func outputShape(for inputs: [Shape]) throws -> Shape { [0] }
    func forward(_ call: KernelCall) {
        let p = call.inputs[0]
        kn_sgd_update(
            p.floats, call.inputs[1].floats, call.inputs.count > 2 ? call.inputs[2].floats : nil, Int64(p.count),
            call.hyper.learningRate, config.momentum, config.dampening, config.weightDecay,
            config.nesterov ? 1 : 0, call.hyper.step <= 1 ? 1 : 0)
    }
}

/// In-place Adam/AdamW step. Inputs: param, grad, exp_avg, exp_avg_sq.
struct AdamUpdateOp: Primitive {
    let config: Optimizer.Adam
    var kind: String { config.decoupledWeightDecay ? "AdamWUpdate" : "AdamUpdate" }
    func outputShape(for inputs: [Shape]) throws -> Shape { [0] }
    func forward(_ call: KernelCall) {
        let p = call.inputs[0]
        kn_adam_update(
            p.floats, call.inputs[1].floats, call.inputs[2].floats, call.inputs[3].floats, Int64(p.count),
            call.hyper.learningRate, config.beta1, config.beta2, config.eps, config.weightDecay,
            config.decoupledWeightDecay ? 1 : 0, max(call.hyper.step, 1))
    }
}
