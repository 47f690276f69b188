SELECT module, module_type, parent, depth, params, own_params, trainable_params, calls,
       input_shape, output_shape
FROM modules
WHERE run_id = $run_id
QUALIFY rank = min(rank) OVER ()
ORDER BY seq
