import CKernels
import Testing

@testable import Kiln

/// Each kernel on every instruction-set path of this CPU against the portable path, on the same
/// inputs (the paths differ only in vector width and FMA contraction: 1e-5 relative).
struct InstructionSetKernelTests {
    /// A kernel run: fills its outputs from fixed inputs.
    typealias Run = () -> [[Float]]

    func values(_ count: Int, seed: UInt64, low: Float = -1, high: Float = 1) -> [Float] {
        randomTensor([count], seed: seed, low: low, high: high).scalars
    }

    func conv(_ c: Int, _ o: Int, _ side: Int, kernel: Int, stride: Int, pad: Int, groups: Int = 1, n: Int = 2) -> kn_conv2d_desc {
        var d = kn_conv2d_desc()
        (d.n, d.c, d.h, d.w, d.o, d.kh, d.kw) = (Int32(n), Int32(c), Int32(side), Int32(side), Int32(o), Int32(kernel), Int32(kernel))
        (d.sh, d.sw, d.pt, d.pl, d.pb, d.pr, d.groups) = (
            Int32(stride), Int32(stride), Int32(pad), Int32(pad), Int32(pad), Int32(pad), Int32(groups)
        )
        precondition(kn_conv2d_geometry(&d) == 0)
        return d
    }

    /// Forward, data gradient and filter gradient of one convolution.
    func convolution(_ d: kn_conv2d_desc) -> Run {
        {
            var d = d
            let xs = Int(d.n * d.c * d.h * d.w), ws = Int(d.o * (d.c / d.groups) * d.kh * d.kw), ys = Int(d.n * d.o * d.oh * d.ow)
            let x = values(xs, seed: 1), w = values(ws, seed: 2), bias = values(Int(d.o), seed: 3), dy = values(ys, seed: 4)
            var y = [Float](repeating: 0, count: ys), dx = [Float](repeating: 0, count: xs), dw = [Float](repeating: 0, count: ws)
            kn_conv2d_forward(&d, x, w, bias, &y)
            kn_conv2d_backward_data(&d, dy, w, &dx)
            kn_conv2d_backward_filter(&d, x, dy, &dw)
            return [y, dx, dw]
        }
    }

    /// Training BN (+ residual, activation) forward and the fused backward, masks from a shared y.
    func batchNorm(activation: Int32) -> Run {
        {
            let (n, c, hw) = (4, 8, 49)
            let z = values(n * c * hw, seed: 5, low: -3, high: 3), residual = values(n * c * hw, seed: 6)
            let gamma = values(c, seed: 7, low: 0.5, high: 1.5), beta = values(c, seed: 8), dy = values(n * c * hw, seed: 9)
            var stats = [Double](repeating: 0, count: n * c * 2)
            for i in 0..<(n * c) {
                var sum = 0.0, squares = 0.0
                z.withUnsafeBufferPointer { kn_moments($0.baseAddress! + i * hw, Int64(hw), &sum, &squares) }
                (stats[2 * i], stats[2 * i + 1]) = (sum, squares)
            }
            var y = [Float](repeating: 0, count: n * c * hw), mean = [Float](repeating: 0, count: c),
                variance = [Float](repeating: 1, count: c)
            kn_batchnorm_apply_training(
                z, &y, stats, gamma, beta, &mean, &variance, 0.1, 1e-5, residual, activation, Int32(n), Int32(c), Int32(hw), nil)
            var yTrain = [Float](repeating: 0, count: n * c * hw)
            kn_batchnorm_training(z, &yTrain, gamma, beta, nil, nil, 0.1, 1e-5, Int32(n), Int32(c), Int32(hw))
            // The masks come from a y computed once (on this path), so no kink can flip between paths.
            let mask = y
            var reduced = [Float](repeating: 0, count: 4 * c), dz = [Float](repeating: 0, count: n * c * hw)
            kn_fused_bn_backward_reduce(z, mask, nil, dy, activation, 1e-5, Int32(n), Int32(c), Int32(hw), &reduced)
            kn_fused_bn_backward_input(
                z, mask, nil, dy, activation, gamma, reduced, Double(n * hw), Int32(n), Int32(c), Int32(hw), &dz)
            return [y, yTrain, mean, variance, reduced, dz]
        }
    }

    func pooling() -> [[Float]] {
        var d = kn_pool2d_desc()
        (d.n, d.c, d.h, d.w, d.kh, d.kw, d.sh, d.sw, d.ph, d.pw) = (2, 3, 13, 13, 3, 3, 2, 2, 1, 1)
        precondition(kn_pool2d_geometry(&d) == 0)
        let x = values(Int(d.n * d.c * d.h * d.w), seed: 10), dy = values(Int(d.n * d.c * d.oh * d.ow), seed: 11)
        var maxY = [Float](repeating: 0, count: dy.count), avgY = maxY
        var maxDx = [Float](repeating: 0, count: x.count), avgDx = maxDx
        kn_maxpool2d_forward(&d, x, &maxY)
        kn_avgpool2d_forward(&d, x, &avgY, 1)
        kn_maxpool2d_backward(&d, x, dy, &maxDx)
        kn_avgpool2d_backward(&d, dy, &avgDx, 0)
        return [maxY, avgY, maxDx, avgDx]
    }

    func elementwiseAndOptimisers() -> [[Float]] {
        let count = 100_003
        let x = values(count, seed: 12, low: -2, high: 8), g = values(count, seed: 13)
        var relu = [Float](repeating: 0, count: count), relu6 = relu, dRelu6 = relu, sum = relu
        kn_relu(x, &relu, Int64(count))
        kn_relu6(x, &relu6, Int64(count))
        kn_relu6_backward(relu6, g, &dRelu6, Int64(count))
        kn_add(x, g, &sum, Int64(count))
        var sgd = x, momentum = [Float](repeating: 0, count: count)
        kn_sgd_update(&sgd, g, &momentum, Int64(count), 0.1, 0.9, 0, 1e-4, 1, 1)
        var adam = x, m = [Float](repeating: 0, count: count), v = m
        kn_adam_update(&adam, g, &m, &v, Int64(count), 1e-3, 0.9, 0.999, 1e-8, 1e-2, 1, 1)
        var softmax = [Float](repeating: 0, count: 21 * 32)
        kn_softmax(Array(x.prefix(21 * 32)), &softmax, 32, 21)
        return [relu, relu6, dRelu6, sum, sgd, momentum, adam, m, v, softmax]
    }

    var cases: [(String, Run)] {
        [
            ("winograd 3x3 (64 channels)", convolution(conv(64, 64, 23, kernel: 3, stride: 1, pad: 1))),
            ("im2col 3x3 stride 2", convolution(conv(16, 24, 11, kernel: 3, stride: 2, pad: 1))),
            ("stem 7x7 stride 2, one image", convolution(conv(3, 16, 29, kernel: 7, stride: 2, pad: 3, n: 1))),
            ("pointwise", convolution(conv(24, 40, 7, kernel: 1, stride: 1, pad: 0))),
            ("grouped", convolution(conv(8, 12, 9, kernel: 3, stride: 1, pad: 1, groups: 4))),
            ("depthwise stride 1", convolution(conv(16, 16, 12, kernel: 3, stride: 1, pad: 1, groups: 16))),
            ("depthwise stride 2", convolution(conv(16, 16, 12, kernel: 3, stride: 2, pad: 1, groups: 16))),
            ("batch norm + residual + relu", batchNorm(activation: Int32(KN_ACT_RELU))),
            ("batch norm + residual + relu6", batchNorm(activation: Int32(KN_ACT_RELU6))),
            ("batch norm, no activation", batchNorm(activation: Int32(KN_ACT_NONE))),
            ("pooling", pooling),
            ("elementwise and optimisers", elementwiseAndOptimisers),
        ]
    }

    @Test func everyPathAgreesWithThePortableOne() throws {
        let paths = InstructionSet.supported
        print("instruction sets on this CPU: \(paths.map(\.description).joined(separator: ", "))")
        for (name, run) in cases {
            let reference = try #require(InstructionSet.onThisThread(.portable, run))
            for isa in paths where isa != .portable {
                let outputs = try #require(InstructionSet.onThisThread(isa, run))
                for (k, (a, b)) in zip(outputs, reference).enumerated() {
                    #expect(a.count == b.count)
                    let error = relativeError(a, b)
                    #expect(error < 1e-5, "\(name), output \(k): \(isa) differs from portable by \(error)")
                }
            }
        }
    }

    /// Forward convolutions sum every output over its inputs in one fixed order, wherever the output
    /// channel falls in the GEMM's tile grid, so equal filters give bit-equal channels (ONNX's
    /// SqueezeNet test softmaxes 1000 such channels at 9.5e9; OpenBLAS rounds them apart).
    @Test func equalFiltersGiveBitEqualChannelsOnEveryPath() throws {
        let shapes = [
            conv(512, 37, 13, kernel: 1, stride: 1, pad: 0, n: 1), conv(64, 37, 9, kernel: 3, stride: 1, pad: 1),
            conv(32, 37, 11, kernel: 3, stride: 2, pad: 1), conv(3, 37, 29, kernel: 7, stride: 2, pad: 3, n: 1),
        ]
        for var d in shapes {
            let perFilter = Int(d.c * d.kh * d.kw), plane = Int(d.oh * d.ow)
            let x = values(Int(d.n * d.c * d.h * d.w), seed: 20, low: -1e7, high: 1e7)
            let w = Array([[Float]](repeating: values(perFilter, seed: 21), count: Int(d.o)).joined())
            for isa in InstructionSet.supported {
                let y = try #require(
                    InstructionSet.onThisThread(isa) { () -> [Float] in
                        var y = [Float](repeating: 0, count: Int(d.n * d.o) * plane)
                        kn_conv2d_forward(&d, x, w, nil, &y)
                        return y
                    })
                for image in 0..<Int(d.n) {
                    let first = image * Int(d.o) * plane
                    let unequal = (1..<Int(d.o)).filter { k in
                        y[(first + k * plane)..<(first + (k + 1) * plane)] != y[first..<(first + plane)]
                    }
                    #expect(unequal.isEmpty, "\(isa), \(d.kh)×\(d.kw) conv of \(d.c) channels: channels \(unequal) differ from channel 0")
                }
            }
        }
    }

    @Test func aThreadsPathDoesNotLeakToOtherThreads() throws {
        let process = InstructionSet.active
        _ = InstructionSet.onThisThread(.portable) { #expect(InstructionSet.active == .portable) }
        #expect(InstructionSet.active == process)
    }
}
