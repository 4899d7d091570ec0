import CKernels
import Testing
@testable import Kiln

struct GraphTests {
    func tinyModel(fcIn: Int = 8) -> Sequential {
        Sequential {
            Conv2d(3, 8, kernel: 3, padding: 1, bias: false).named("conv")
            BatchNorm2d(8).named("bn")
            ReLU().named("relu")
            Residual {
                Conv2d(8, 8, kernel: 3, padding: 1).named("conv1")
                ReLU().named("relu")
            } output: {
                ReLU().named("relu")
            }.named("block")
            Sequential {
                Conv2d(8, 8, kernel: 1)
                ReLU()
            }.named("head")
            AdaptiveAvgPool2d(1).named("pool")
            Flatten().named("flatten")
            Linear(fcIn, 5).named("fc")
        }
    }

    @Test func namesFollowModulePaths() throws {
        let graph = try Graph.trace(tinyModel(), input: [2, 3, 8, 8])
        #expect(
            graph.stateValues.map(\.name) == [
                "conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
                "block.conv1.weight", "block.conv1.bias", "head.0.weight", "head.0.bias", "fc.weight", "fc.bias",
            ])
        #expect(graph.nodes.map(\.name).contains("block.relu_1"))
        #expect(graph.nodes.map(\.name).contains("head.1"))
        #expect(graph[graph.outputs["logits"]!].shape == [2, 5])
        #expect(graph.buffers.count == 3)
    }

    @Test func epilogueActivationCodesAreTheKernelsCodes() {
        #expect(EpilogueActivation.none.kernelCode == Int32(KN_ACT_NONE))
        #expect(EpilogueActivation.relu.kernelCode == Int32(KN_ACT_RELU))
        #expect(EpilogueActivation.relu6.kernelCode == Int32(KN_ACT_RELU6))
    }

    @Test func useListsNameEveryReaderOnce() throws {
        var graph = Graph()
        let x = try graph.addValue(name: "x", shape: [2, 3], dtype: .float32, role: .input)
        let doubled = try graph.addNode(name: "double", op: AddOp(), inputs: [x, x])
        let y = try graph.addNode(name: "relu", op: ReLUOp(), inputs: [doubled])
        let z = try graph.addNode(name: "sum", op: AddOp(), inputs: [x, y])
        #expect(graph.readers(of: x).map(\.name) == ["double", "sum"])
        #expect(graph.readers(of: z).isEmpty)
        // "double" reads x twice: one reader, and "relu" is the sole reader of its result.
        #expect(graph.readers(of: doubled).map(\.name) == ["relu"])
        #expect(graph.soleReader(of: doubled)?.name == "relu")
        #expect(graph.soleReader(of: x) == nil)
        graph.outputs["features"] = doubled
        #expect(graph.soleReader(of: doubled) == nil, "a graph output is read by the caller too")
        // Passes rebuild graphs node by node: the copy's use-lists match.
        let fused = try Compiler.inference(tinyModel(), input: [2, 3, 8, 8])
        for value in fused.values {
            let scanned = fused.nodes.filter { $0.inputs.contains(value.id) }.map(\.index)
            #expect(fused.readers(of: value.id).map(\.index) == scanned, "\(value.name)")
        }
    }

    @Test func shapeMistakeNamesTheNode() {
        do {
            _ = try Graph.trace(tinyModel(fcIn: 16), input: [2, 3, 8, 8])
            Issue.record("expected a shape error")
        } catch let GraphError.shapeMismatch(node, op, detail) {
            #expect(node == "fc")
            #expect(op == "Linear")
            #expect(detail.contains("[2, 8]") && detail.contains("[5, 16]"))
        } catch { Issue.record("unexpected \(error)") }
    }

    @Test func lossGraphAddsLabelsAndScalarLoss() throws {
        let graph = try Graph.trace(tinyModel(), input: [2, 3, 8, 8], withLoss: true)
        #expect(graph[graph.outputs["loss"]!].shape == [])
        #expect(try graph.value(named: "labels").dtype == .int64)
    }

    @Test func executorRunsDeterministicallyAndChecksFeeds() throws {
        let graph = try Graph.trace(tinyModel(), input: [2, 3, 8, 8])
        let store = ParameterStore(graph: graph, seed: 7)
        let executor = try Executor(graph: graph, parameters: store)
        let x = randomTensor([2, 3, 8, 8], seed: 3)
        let first = try executor.run(["input": x])["logits"]!.scalars
        let second = try executor.run(["input": x])["logits"]!.scalars
        #expect(first == second)
        #expect(first.contains { $0 != 0 })
        #expect(throws: GraphError.self) { try executor.run(["input": randomTensor([1, 3, 8, 8], seed: 3)]) }
        #expect(throws: GraphError.self) { try executor.run([:]) }
    }

    @Test func summaryCountsParametersNotBuffers() throws {
        let graph = try Graph.trace(tinyModel(), input: [1, 3, 8, 8])
        let summary = GraphSummary(graph)
        let expected = 8 * 3 * 9 + 2 * 8 + (8 * 8 * 9 + 8) + (8 * 8 + 8) + (8 * 5 + 5)
        #expect(summary.totalParams == expected)
        #expect(summary.table.contains("Total params: \(expected.grouped)"))
        #expect(summary.table.contains("Conv2d-1"))
    }

    @Test func groupedThousands() {
        #expect(11_187_285.grouped == "11,187,285")
        #expect(999.grouped == "999")
        #expect(1000.grouped == "1,000")
    }
}
