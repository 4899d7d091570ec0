/// The layer vocabulary of the DSL, named and parameterised like torch.nn.

public struct Conv2d: Layer {
    public let inChannels, outChannels: Int
    public let kernel: (h: Int, w: Int)
    public let stride: (h: Int, w: Int)
    public let padding: Padding
    public let groups: Int
    public let bias: Bool

    public init(
        _ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
        groups: Int = 1, bias: Bool = true
    ) {
        self.init(
            inChannels, outChannels, kernel: (kernel, kernel), stride: (stride, stride),
            padding: .symmetric(padding), groups: groups, bias: bias)
    }

    public init(
        _ inChannels: Int, _ outChannels: Int, kernel: (Int, Int), stride: (Int, Int),
        padding: Padding, groups: Int = 1, bias: Bool = true
    ) {
        (self.inChannels, self.outChannels, self.groups, self.bias) = (inChannels, outChannels, groups, bias)
        self.kernel = (kernel.0, kernel.1)
        self.stride = (stride.0, stride.1)
        self.padding = padding
    }

    public func build(_ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID {
        let perGroup = inChannels / max(groups, 1)
        let receptive = kernel.h * kernel.w
        let w = try g.parameter(
            "weight", shape: [outChannels, perGroup, kernel.h, kernel.w],
            initializer: .kaimingNormalFanOut(fanOut: outChannels * receptive))
        var inputs = [x, w]
        if bias {
            inputs.append(try g.parameter("bias", shape: [outChannels], initializer: .uniformFanIn(fanIn: perGroup * receptive)))
        }
        return try g.apply(Conv2DOp(stride: (stride.h, stride.w), padding: padding, groups: groups), inputs)
    }
}

public struct BatchNorm2d: Layer {
    public let features: Int
    public let eps: Float
    public let momentum: Float

    /// eps 1e-5 and momentum 0.1 are PyTorch's defaults; Keras models use eps 1e-3.
    public init(_ features: Int, eps: Float = 1e-5, momentum: Float = 0.1) {
        (self.features, self.eps, self.momentum) = (features, eps, momentum)
    }

    public func build(_ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID {
        let c: Shape = [features]
        let inputs = [
            x,
            try g.parameter("weight", shape: c, initializer: .ones),
            try g.parameter("bias", shape: c, initializer: .zeros),
            try g.parameter("running_mean", shape: c, initializer: .zeros, buffer: true),
            try g.parameter("running_var", shape: c, initializer: .ones, buffer: true),
            try g.parameter("num_batches_tracked", shape: [], initializer: .zeros, buffer: true, dtype: .int64),
        ]
        return try g.apply(BatchNormOp(eps: eps, momentum: momentum), inputs)
    }
}

public struct Linear: Layer {
    public let inFeatures, outFeatures: Int
    public let bias: Bool

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        (self.inFeatures, self.outFeatures, self.bias) = (inFeatures, outFeatures, bias)
    }

    public func build(_ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID {
        var inputs = [x, try g.parameter("weight", shape: [outFeatures, inFeatures], initializer: .uniformFanIn(fanIn: inFeatures))]
        if bias { inputs.append(try g.parameter("bias", shape: [outFeatures], initializer: .uniformFanIn(fanIn: inFeatures))) }
        return try g.apply(LinearOp(), inputs)
    }
}

/// A parameterless layer that applies one op.
public struct OpLayer: Layer {
    public let op: any Primitive
    public init(_ op: any Primitive) { self.op = op }
    public func build(_ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID { try g.apply(op, [x]) }
}

public func ReLU() -> OpLayer { OpLayer(ReLUOp()) }
public func ReLU6() -> OpLayer { OpLayer(ReLU6Op()) }
public func Flatten() -> OpLayer { OpLayer(FlattenOp()) }
public func Dropout(_ p: Float = 0.5) -> OpLayer { OpLayer(DropoutOp(p: p)) }
public func Softmax() -> OpLayer { OpLayer(SoftmaxOp(log: false)) }
public func LogSoftmax() -> OpLayer { OpLayer(SoftmaxOp(log: true)) }
public func ZeroPad2d(_ padding: Padding) -> OpLayer { OpLayer(ZeroPad2DOp(padding)) }
/// AdaptiveAvgPool2d((1, 1)): the only output size the zoo needs.
public func AdaptiveAvgPool2d(_ outputSize: Int = 1) -> OpLayer {
    precondition(outputSize == 1, "AdaptiveAvgPool2d supports output size 1")
    return OpLayer(GlobalAvgPoolOp())
}
public func MaxPool2d(_ kernel: Int, stride: Int? = nil, padding: Int = 0) -> OpLayer {
    OpLayer(Pool2DOp(.max, kernel: (kernel, kernel), stride: (stride ?? kernel, stride ?? kernel), padding: (padding, padding)))
}
public func AvgPool2d(_ kernel: Int, stride: Int? = nil, padding: Int = 0, countIncludePad: Bool = true) -> OpLayer {
    OpLayer(
        Pool2DOp(
            .average(countIncludePad: countIncludePad), kernel: (kernel, kernel),
            stride: (stride ?? kernel, stride ?? kernel), padding: (padding, padding)))
}
