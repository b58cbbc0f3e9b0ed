"""The LoRA training step of `npm run bench -- --peers`, in PyTorch or in Keras 3.

    python lora_step.py torch|keras THREADS

Builds the benchmark's network (512 -> 2048 -> 2048 -> 128, ReLU between, batch 32, LoRA rank 8,
alpha 16, Adam 1e-3 on the adapters only, MSE loss), limited to THREADS compute threads, then
answers the benchmark over stdin/stdout, one JSON line per request, so that the Node process can
interleave its own timings with this one's (and with the other peers', each in its own process:
TensorFlow fixes its thread pools when it starts):

    {"op": "step", "n": 10}    -> {"ms": [..10 step times..]}
    {"op": "matmul", "n": 10}  -> {"ms": [..]}  one [32, 2048] x [2048, 2048] product
    {"op": "quit"}             -> exits

- torch: the reference program's LoRALayer math (lora_seed.py): h = x W^T + (x A^T) B^T * alpha/r,
  W frozen (no bias), A and B trained.
- keras: keras.layers.Dense(...).enable_lora(8) on the TensorFlow backend (Keras freezes the
  kernel; the biases stay trainable), the step a tf.function compiled with XLA (GradientTape +
  optimizer.apply), as Keras's fit compiles it.
"""
import json
import os
import sys
import time

DIMS = [512, 2048, 2048, 128]
BATCH, RANK, ALPHA, LR = 32, 8, 16, 1e-3


def torch_peer(threads):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class LoRALayer(torch.nn.Module):
        def __init__(self, d_in, d_out):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(d_out, d_in) / d_in**0.5, requires_grad=False)
            self.lora_A = torch.nn.Parameter(torch.randn(RANK, d_in) / RANK**0.5)
            self.lora_B = torch.nn.Parameter(torch.zeros(d_out, RANK))
            self.scaling = ALPHA / RANK

        def forward(self, x):
            return F.linear(x, self.weight) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling

    layers = torch.nn.ModuleList([LoRALayer(a, b) for a, b in zip(DIMS[:-1], DIMS[1:])])

    def forward(x):
        for i, layer in enumerate(layers):
            x = layer(x)
            if i < len(layers) - 1:
                x = torch.relu(x)
        return x

    params = [p for p in layers.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=LR)
    x = torch.randn(BATCH, DIMS[0])
    y = torch.randn(BATCH, DIMS[-1])
    a = torch.randn(BATCH, 2048)
    b = torch.randn(2048, 2048)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(forward(x), y)
        loss.backward()
        opt.step()
        loss.item()

    def matmul():
        (a @ b).sum().item()

    info = {"framework": "torch", "version": torch.__version__, "threads": torch.get_num_threads(), "trainable": sum(p.numel() for p in params)}
    return step, matmul, info


def keras_peer(threads):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    # Intra-op: the threads one kernel (a matMul) splits over, as XNNPACK's pool and torch's do.
    # Inter-op 1: ops run one after another, as in the other two.
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((DIMS[0],))] + [keras.layers.Dense(d, activation="relu" if i < len(DIMS) - 2 else None) for i, d in enumerate(DIMS[1:])])
    for layer in model.layers:
        layer.enable_lora(RANK, lora_alpha=ALPHA)
    opt = keras.optimizers.Adam(LR)
    variables = model.trainable_variables
    x = tf.random.normal([BATCH, DIMS[0]])
    y = tf.random.normal([BATCH, DIMS[-1]])
    a = tf.random.normal([BATCH, 2048])
    b = tf.random.normal([2048, 2048])

    # XLA, as Keras's own fit / train_on_batch compile the step (jit_compile="auto" on TensorFlow):
    # without it the same step took 2.2x longer here (96 ms vs 43 ms on 1 thread).
    @tf.function(jit_compile=True)
    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        opt.apply(tape.gradient(loss, variables), variables)
        return loss

    @tf.function
    def product():
        return tf.reduce_sum(tf.matmul(a, b))

    def step():
        train_step().numpy()

    def matmul():
        product().numpy()

    info = {"framework": "keras", "version": f"keras {keras.__version__}, tensorflow {tf.__version__}", "threads": threads, "trainable": int(sum(v.numpy().size for v in variables))}
    return step, matmul, info


def main():
    framework, threads = sys.argv[1], int(sys.argv[2])
    step, matmul, info = {"torch": torch_peer, "keras": keras_peer}[framework](threads)
    for _ in range(3):  # warm-up (tf.function traces here)
        step()
        matmul()
    print(json.dumps({"ready": True, **info}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        fn = {"step": step, "matmul": matmul}[request["op"]]
        times = []
        for _ in range(int(request["n"])):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        print(json.dumps({"ms": times}), flush=True)


if __name__ == "__main__":
    main()
