"""The TPU compiler builds the real train and inference steps (tiny model) for TPU
topologies on this CPU-only host: the TPU lowering of the step cannot break unseen.
Skipped only where libtpu is missing (scripts/test.sh provides it)."""

import importlib.util
import os
import sys

import pytest

_PATH = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "tpu_compile.py")
_spec = importlib.util.spec_from_file_location("tpu_compile", _PATH)
tpu_compile = importlib.util.module_from_spec(_spec)
sys.modules["tpu_compile"] = tpu_compile  # dataclasses look their module up
_spec.loader.exec_module(tpu_compile)

needs_libtpu = pytest.mark.skipif(
    not tpu_compile.libtpu_available(),
    reason="libtpu missing (the tpu-compile extra, or TPU_LIBRARY_PATH as scripts/test.sh sets)",
)

TINY = [
    "model.depth=10",
    "model.widen_factor=0.125",
    "model.num_frames=2",
    "data.num_frames=2",
    "data.train.crop_size=32",
    "model.pos_dims=[4,2,1,1]",
    "model.num_classes=5",
]


def _config(**flags):
    args = tpu_compile._parser().parse_args(
        [f"--set={item}" for item in TINY]
        + [f"--{k.replace('_', '-')}={v}" for k, v in flags.items() if v is not True]
        + [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is True]
    )
    return tpu_compile.make_config(args)


@needs_libtpu
def test_train_and_inference_steps_compile_for_a_tpu_topology():
    devices = tpu_compile.topology_devices("v5e:2x2")
    assert len(devices) == 4 and devices[0].platform == "tpu"
    train = tpu_compile.compile_program(_config(), devices, "train", per_chip_batch=2)
    inference = tpu_compile.compile_program(_config(), devices, "inference", 2)
    # The program is the TPU one, with the kernels of a TPU mesh.
    assert train["kernels"] == inference["kernels"] == "xla"
    assert "TPU" in train["hlo"] or "T(8,128)" in train["hlo"]  # TPU tiled layouts
    assert train["chips"] == 4 and train["processes"] == 1
    # The compiler's FLOPs: a train step is about 3x the forward pass (+ optimizer).
    ratio = train["flops_per_chip"] / inference["flops_per_chip"]
    assert 2.5 < ratio < 4.5, ratio
    summary = tpu_compile.summarize(train)
    assert summary["gflops_per_clip"] > 0 and summary["gb_per_clip"] > 0
    assert summary["fits"] and 0 < summary["mfu"] <= 1 and summary["chip"] == "TPU v5e"
    assert train["alias_bytes"] > 0  # the state is donated
    # The largest ops are named back to the model's layers.
    layers = [op["layer"] for op in train["ops"]]
    assert any("backbone/layer1_0/conv1/spatial_conv" in layer for layer in layers)


@needs_libtpu
def test_multi_host_topology_and_sharded_parameters():
    devices = tpu_compile.topology_devices("v5e:2x4")  # two hosts of four chips
    replicated = tpu_compile.compile_program(_config(), devices, "inference", 1)
    sharded = tpu_compile.compile_program(
        _config(shard_params=True), devices, "inference", 1
    )
    assert replicated["processes"] == sharded["processes"] == 2
    assert replicated["chips"] == 8
    # FSDP: each chip holds an eighth of the larger kernels (the tiny model's others
    # stay replicated, below fsdp_sharding's minimum size).
    assert sharded["argument_bytes"] < 0.95 * replicated["argument_bytes"]


@needs_libtpu
def test_cpu_tuned_kernels_can_be_compiled_for_tpu_and_unknown_topologies_are_named():
    config = _config(kernels="cpu_tuned", dtype="float32")
    devices = tpu_compile.topology_devices("v6e:2x2")
    result = tpu_compile.compile_program(config, devices, "inference", 1)
    assert result["kernels"] == "cpu_tuned" and result["dtype"] == "float32"
    assert tpu_compile.summarize(result)["chip"] == "TPU v6e"
    with pytest.raises(ValueError, match="v9z:2x2"):
        tpu_compile.topology_devices("v9z:2x2")


def test_missing_libtpu_is_a_clear_error():
    with pytest.raises(tpu_compile.LibtpuMissingError, match=r"pip install.*tpu-compile"):
        tpu_compile.require_libtpu("no_such_libtpu_module")


def test_hlo_accounting():
    assert tpu_compile.shape_bytes("bf16[8,56,56,64]{3,0,2,1:T(8,128)(2,1)}") == (
        8 * 56 * 56 * 64 * 2
    )
    assert tpu_compile.shape_bytes("(f32[2,3]{1,0}, s8[4]{0}, u32[])") == 24 + 4 + 4
    op_name = (
        "jit(train_step)/transpose(jvp(SqueezeTime))/backbone/layer2_0/conv2/"
        "spatial_conv/glo_conv_3/conv_general_dilated"
    )
    assert tpu_compile.layer_of(op_name) == (
        "train_step/backbone/layer2_0/conv2/spatial_conv/glo_conv_3 (conv_general_dilated)"
    )
    hlo = "\n".join(
        [
            "ENTRY %main (p0: bf16[4,8]) -> bf16[4,8] {",
            "  %p0 = bf16[4,8]{1,0} parameter(0)",
            "  %p1 = f32[8]{0} parameter(1)",
            "  ROOT %fusion.1 = bf16[4,8]{1,0} fusion(%p0, %p1), kind=kLoop, "
            'metadata={op_name="jit(f)/backbone/bn1/mul"}',
            "}",
        ]
    )
    (op,) = tpu_compile.top_level_ops(hlo)
    assert op["bytes"] == 64 + 32 + 64 and op["opcode"] == "fusion:kLoop"
    assert op["layer"] == "f/backbone/bn1 (mul)"  # jit(f): the program, then layers


def test_hbm_traffic_estimate_counts_tiled_hbm_arrays_and_prefetches():
    # 16 channels minor in T(8,128) tiles: padded to 128 lanes, 8x the logical bytes.
    ((logical, tiled, in_hbm),) = tpu_compile.hbm_arrays(
        "bf16[64,56,56,16]{3,0,2,1:T(8,128)(2,1)}"
    )
    assert (logical, tiled, in_hbm) == (64 * 56 * 56 * 16 * 2, 64 * 56 * 56 * 128 * 2, True)
    ((_, _, in_hbm),) = tpu_compile.hbm_arrays("bf16[8,128]{1,0:T(8,128)(2,1)S(1)}")
    assert not in_hbm  # on-chip memory
    hlo = "\n".join(
        [
            "ENTRY %main (p0: bf16[16,128]) -> bf16[16,128] {",
            "  %p0 = bf16[16,128]{1,0:T(8,128)(2,1)} parameter(0)",
            "  %s = ((bf16[16,128]{1,0:T(8,128)(2,1)}), bf16[8,128]{1,0:T(8,128)(2,1)S(1)}, "
            "s32[]{:S(2)}) slice-start(%p0), slice={[0:8], [0:128]}",
            "  %d = bf16[8,128]{1,0:T(8,128)(2,1)S(1)} slice-done(%s)",
            "  %c = bf16[8,128]{1,0:T(8,128)(2,1)S(1)} custom-call(%d), "
            'custom_call_target="ConcatBitcast"',
            "  ROOT %f = bf16[16,128]{1,0:T(8,128)(2,1)} fusion(%p0, %c), kind=kLoop",
            "}",
        ]
    )
    estimate = tpu_compile.hbm_traffic_estimate(hlo)
    # The slice reads 8 of the 16 rows; the fusion reads p0 (HBM) and c (on chip)
    # and writes its result to HBM.
    assert estimate == {
        "prefetch": 8 * 128 * 2,
        "ops": 2 * 16 * 128 * 2,
        "ops_logical": 2 * 16 * 128 * 2,
    }
    # Prefetches are not listed among the computations.
    assert [op["name"] for op in tpu_compile.top_level_ops(hlo)] == ["f"]


def test_long_tuples_with_index_comments_are_parsed():
    # libtpu writes /*index=5*/ before a tuple's sixth element: an "=" in the shape.
    shape = "(" + ", ".join(["bf16[8,128]{1,0:T(8,128)(2,1)}"] * 5)
    shape += ", /*index=5*/bf16[8,128]{1,0:T(8,128)(2,1)})"
    hlo = "\n".join(
        [
            "ENTRY %main (p0: bf16[8,128]) -> bf16[8,128] {",
            "  %p0 = bf16[8,128]{1,0:T(8,128)(2,1)} parameter(0)",
            f"  ROOT %f = {shape} fusion(%p0), kind=kLoop",
            "}",
        ]
    )
    (op,) = tpu_compile.top_level_ops(hlo)
    assert op["bytes"] == 7 * 8 * 128 * 2
    assert tpu_compile.hbm_traffic_estimate(hlo)["ops"] == 7 * 8 * 128 * 2


def test_hbm_traffic_estimate_counts_async_collectives_once():
    # An all-gather of a (2,128) shard into (8,128), all in HBM: the start reads the
    # shard and writes the gathered array (its tuple carries the operand along: not a
    # write), the done moves nothing.
    shard, full = "bf16[2,128]{1,0:T(2,128)(2,1)}", "bf16[8,128]{1,0:T(8,128)(2,1)}"
    hlo = "\n".join(
        [
            "ENTRY %main (p0: bf16[2,128]) -> bf16[8,128] {",
            f"  %p0 = {shard} parameter(0)",
            f"  %ags = ({shard}, {full}) all-gather-start(%p0), dimensions={{0}}",
            f"  ROOT %agd = {full} all-gather-done(%ags)",
            "}",
        ]
    )
    assert tpu_compile.hbm_traffic_estimate(hlo)["ops"] == (2 + 8) * 128 * 2
    # libtpu's form: the halves are fusions, the shard passes through aliased, the
    # done half aliases the gathered buffer; a layer's fusion may take the start in.
    hlo = "\n".join(
        [
            "ENTRY %main (p0: bf16[2,128], p1: bf16[8,128]) -> bf16[8,128] {",
            f"  %p0 = {shard} parameter(0)",
            f"  %p1 = {full} parameter(1)",
            f"  %async-collective-start = ({full}, {shard}, {full}, u32[]{{:S(2)}}) "
            "fusion(%p1, %p0), kind=kOutput, output_to_operand_aliasing={{1}: (1, {})}, "
            "calls=%fused_computation.1",
            "  %g0 = bf16[2,128]{1,0:T(2,128)(2,1)} get-tuple-element("
            "%async-collective-start), index=1",
            "  %g1 = bf16[8,128]{1,0:T(8,128)(2,1)} get-tuple-element("
            "%async-collective-start), index=2",
            "  %g2 = u32[]{:S(2)} get-tuple-element(%async-collective-start), index=3",
            f"  ROOT %async-collective-done = {full} fusion(%g0, %g1, %g2), kind=kCustom, "
            "output_to_operand_aliasing={{}: (1, {})}, calls=%fused_computation.2",
            "}",
        ]
    )
    # The start: reads p1 and the shard, writes its layer result and the gathered
    # array; the shard passed through and the done half count nothing.
    assert tpu_compile.hbm_traffic_estimate(hlo)["ops"] == (8 + 2 + 8 + 8) * 128 * 2
    assert [op["name"] for op in tpu_compile.top_level_ops(hlo)] == [
        "async-collective-start"
    ]
    assert tpu_compile.leaf_indices(f"(({shard}, {full}), {full}, u32[])") == [
        (0, 0),
        (0, 1),
        (1,),
        (2,),
    ]
