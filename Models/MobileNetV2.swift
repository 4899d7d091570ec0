import Kiln

/// Keras' MobileNetV2 (applications.MobileNetV2), layer for layer: ZeroPadding2D + 'valid' conv
/// for stride 2, ReLU6, BN eps 1e-3 (Keras momentum 0.999 = PyTorch momentum 0.001), the
/// 1280-channel last conv. Module names are the Keras layer names (`Conv1`, `bn_Conv1`,
/// `expanded_conv_depthwise`, `block_1_expand`, …, `Conv_1`, `Conv_1_bn`), so TF.js weights map
/// 1:1; the classifier is `predictions`.
///
/// `batchNormMomentum` is PyTorch's convention (Keras' 0.999 = 0.001); training runs that start
/// from ImageNet statistics may want PyTorch's 0.1 so the running statistics follow the new data.
public func MobileNetV2(classes: Int = 1000, width alpha: Double = 1.0, batchNormMomentum: Float = 0.001) -> Sequential {
    let KerasBatchNorm = { (channels: Int) in BatchNorm2d(channels, eps: 1e-3, momentum: batchNormMomentum) }
    let first = makeDivisible(32 * alpha)
    let last = alpha > 1.0 ? makeDivisible(1280 * alpha) : 1280
    // (filters, stride, expansion) for block_id 0…16.
    let blocks: [(Int, Int, Int)] = [
        (16, 1, 1),
        (24, 2, 6), (24, 1, 6),
        (32, 2, 6), (32, 1, 6), (32, 1, 6),
        (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6),
        (96, 1, 6), (96, 1, 6), (96, 1, 6),
        (160, 2, 6), (160, 1, 6), (160, 1, 6),
        (320, 1, 6),
    ]
    var channels = first
    var layers: [any Layer] = [
        KerasStridePad().named("Conv1_pad"),
        Conv2d(3, first, kernel: 3, stride: 2, bias: false).named("Conv1"),
        KerasBatchNorm(first).named("bn_Conv1"),
        ReLU6().named("Conv1_relu"),
    ]
    for (id, (filters, stride, expansion)) in blocks.enumerated() {
        let out = makeDivisible(Double(Int(Double(filters) * alpha)))
        layers.append(InvertedResidual(id: id, in: channels, out: out, stride: stride, expansion: expansion, bnMomentum: batchNormMomentum))
        channels = out
    }
    layers += [
        Conv2d(channels, last, kernel: 1, bias: false).named("Conv_1"),
        KerasBatchNorm(last).named("Conv_1_bn"),
        ReLU6().named("out_relu"),
        AdaptiveAvgPool2d(1).named("global_average_pooling2d"),
        Flatten().named("flatten"),
        Linear(last, classes).named("predictions"),
    ]
    return Sequential(layers)
}

/// Keras' `_inverted_res_block`: [1×1 expand → BN → ReLU6] → (pad) → depthwise 3×3 → BN → ReLU6
/// → 1×1 project → BN, plus the input when shapes allow. Block 0 has no expansion and the
/// prefix `expanded_conv_`.
struct InvertedResidual: NamedLayer {
    let id, inChannels, outChannels, stride, expansion: Int
    let bnMomentum: Float

    init(id: Int, in inChannels: Int, out outChannels: Int, stride: Int, expansion: Int, bnMomentum: Float) {
        (self.id, self.inChannels, self.outChannels, self.stride, self.expansion) = (id, inChannels, outChannels, stride, expansion)
        self.bnMomentum = bnMomentum
    }

    var name: String { id == 0 ? "expanded_conv" : "block_\(id)" }

    func build(_ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID {
        let prefix = name + "_"
        let KerasBatchNorm = { (channels: Int) in BatchNorm2d(channels, eps: 1e-3, momentum: bnMomentum) }
        let hidden = id == 0 ? inChannels : expansion * inChannels
        var layers: [any Layer] = []
        if id != 0 {
            layers += [
                Conv2d(inChannels, hidden, kernel: 1, bias: false).named(prefix + "expand"),
                KerasBatchNorm(hidden).named(prefix + "expand_BN"),
                ReLU6().named(prefix + "expand_relu"),
            ]
        }
        if stride == 2 { layers.append(KerasStridePad().named(prefix + "pad")) }
        layers += [
            Conv2d(
                hidden, hidden, kernel: 3, stride: stride, padding: stride == 1 ? 1 : 0,
                groups: hidden, bias: false
            ).named(prefix + "depthwise"),
            KerasBatchNorm(hidden).named(prefix + "depthwise_BN"),
            ReLU6().named(prefix + "depthwise_relu"),
            Conv2d(hidden, outChannels, kernel: 1, bias: false).named(prefix + "project"),
            KerasBatchNorm(outChannels).named(prefix + "project_BN"),
        ]
        let projected = try Sequential(layers).build(x, in: g)
        guard inChannels == outChannels && stride == 1 else { return projected }
        return try g.scoped(prefix + "add") { try g.apply(AddOp(), [x, projected]) }
    }
}

/// Keras' `correct_pad` for a 3×3 stride-2 'valid' conv: pads [[0,1],[0,1]] on even sizes,
/// [[1,1],[1,1]] on odd ones, so it is decided from the input shape at build time.
struct KerasStridePad: Layer {
    func build(_ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID {
        let shape = g.graph[x].shape
        guard shape.rank == 4 else { return try g.apply(ZeroPad2DOp(.zero), [x]) }
        let adjust = (h: 1 - shape[2] % 2, w: 1 - shape[3] % 2)
        return try g.apply(ZeroPad2DOp(Padding(top: 1 - adjust.h, left: 1 - adjust.w, bottom: 1, right: 1)), [x])
    }
}

/// Keras' `_make_divisible(v, 8)`: round to a multiple of 8, never more than 10% down.
func makeDivisible(_ v: Double, divisor: Int = 8) -> Int {
    var result = max(divisor, Int(v + Double(divisor) / 2) / divisor * divisor)
    if Double(result) < 0.9 * v { result += divisor }
    return result
}
