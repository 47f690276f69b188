-- rule: device_underused
-- severity: warning
-- title: Accelerator unused or DataParallel
-- requires: events
-- seed: part 6 §5 (training is slow: use the GPU, several GPUs with DistributedDataParallel)
-- suggestion: Train where the accelerator is: model.to("cuda") before building the optimizer, and each batch x.to("cuda", non_blocking=True) with pin_memory=True in the DataLoader; for several GPUs use DistributedDataParallel (torchrun --nproc_per_node=N), one process per GPU, instead of DataParallel, whose single process scatters every batch and gathers every output on the first GPU.
-- null: a run trains on the accelerator it was given, or on the CPU where the process sees none, with the model as the loop built it (DDP, FSDP or no wrapper); run_started records the parameters' device, the CUDA devices the process could use and the model's class, so a healthy run shows no CPU beside a visible GPU and no DataParallel
-- false_alarms: none by construction on the labelled corpus (its healthy runs train on the machine's only device, unwrapped); reported on purpose, and possibly wanted: a deliberate CPU run on a GPU machine (a debugging run; hide the GPUs with CUDA_VISIBLE_DEVICES="" to say so)
-- From each run's first run_started event (rank 0's, the earliest attempt): the
-- parameters' device, the CUDA devices visible to the process, and the model's class.
-- One finding per cause: `cpu_beside_gpu` when the watched parameters live on the CPU
-- while torch.cuda.device_count() > 0, `data_parallel` when the model handed to the
-- Collector is torch.nn.DataParallel.
WITH started AS (
    SELECT run_id, arg_min(payload, (attempt, rank, step, seq)) AS payload,
           min(step) AS step
    FROM events WHERE kind = 'run_started'
    GROUP BY run_id
),
facts AS (
    SELECT run_id, step,
           json_extract_string(payload, '$.device') AS device,
           try_cast(json_extract(payload, '$.cuda_devices') AS BIGINT) AS cuda_devices,
           json_extract_string(payload, '$.model') AS model
    FROM started
)
SELECT run_id, 'device' AS subject, step,
       printf('trained on the CPU while %d CUDA device(s) were visible to the process', cuda_devices) AS message,
       json_object('cause', 'cpu_beside_gpu', 'device', device, 'cuda_devices', cuda_devices)::VARCHAR AS evidence,
       NULL AS suggestion
FROM facts
WHERE device LIKE 'cpu%' AND cuda_devices > 0
UNION ALL
SELECT run_id, 'model' AS subject, step,
       printf('the model is wrapped in torch.nn.DataParallel (on %s, %d CUDA device(s) visible): one process scatters each batch and gathers each output; DistributedDataParallel runs a process per device',
              device, coalesce(cuda_devices, 0)) AS message,
       json_object('cause', 'data_parallel', 'device', device, 'cuda_devices', cuda_devices, 'model', model)::VARCHAR AS evidence,
       'Use DistributedDataParallel instead of DataParallel: torchrun --nproc_per_node=N train.py, dist.init_process_group("nccl"), model = DDP(model.to(local_rank), device_ids=[local_rank]) and a DistributedSampler; it overlaps gradient all-reduce with backward and has no single-GPU bottleneck.' AS suggestion
FROM facts
WHERE model = 'DataParallel'
