import CKernels

// Float64 definitions of the dense layer, softmax and the loss, with their gradients.

extension LinearOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let x = inputs[0].shape, w = inputs[1].shape
        let bias = inputs.count > 2 ? inputs[2].doubles : nil
        return .computing(call.outputShape) {
            kr_linear_forward(inputs[0].doubles, inputs[1].doubles, bias, $0, Int32(x[0]), Int32(x[1]), Int32(w[0]))
        }
    }
}

extension LinearBackwardOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        .computing(call.outputShape) { out in
            switch wrt {
            case .input:
                let dy = inputs[0].shape, w = inputs[1].shape
                kr_linear_backward_data(inputs[0].doubles, inputs[1].doubles, out, Int32(dy[0]), Int32(w[1]), Int32(w[0]))
            case .weight:
                let x = inputs[0].shape, dy = inputs[1].shape
                kr_linear_backward_weight(inputs[0].doubles, inputs[1].doubles, out, Int32(x[0]), Int32(x[1]), Int32(dy[1]))
            }
        }
    }
}

extension SoftmaxOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let s = inputs[0].shape
        return .computing(call.outputShape) { kr_softmax(inputs[0].doubles, $0, Int32(s[0]), Int32(s[1]), log ? 1 : 0) }
    }
}

extension SoftmaxBackwardOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let s = inputs[0].shape
        return .computing(call.outputShape) {
            kr_softmax_backward(inputs[0].doubles, inputs[1].doubles, $0, Int32(s[0]), Int32(s[1]), log ? 1 : 0)
        }
    }
}

/// The labels of a cross-entropy node as integers, each checked against the class count.
private func checkedLabels(_ labels: Float64Tensor, classes: Int, node: String) throws -> [Int64] {
    let values = labels.int64s
    if let bad = values.firstIndex(where: { $0 < 0 || $0 >= classes }) {
        throw KernelError(node: node, detail: "label \(values[bad]) at index \(bad) outside [0, \(classes))")
    }
    return values
}

extension CrossEntropyOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let s = inputs[0].shape
        let labels = try checkedLabels(inputs[1], classes: s[1], node: call.node)
        return .computing(call.outputShape) { $0.pointee = kr_cross_entropy(inputs[0].doubles, labels, Int32(s[0]), Int32(s[1])) }
    }
}

extension CrossEntropyBackwardOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let s = inputs[0].shape
        let labels = try checkedLabels(inputs[1], classes: s[1], node: call.node)
        return .computing(call.outputShape) {
            kr_cross_entropy_backward(inputs[0].doubles, labels, inputs[2].doubles.pointee, Int32(s[0]), Int32(s[1]), $0)
        }
    }
}
