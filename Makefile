PYTHON ?= python
PIP ?= $(PYTHON) -m pip

.PHONY: install test lint demo train-synthetic ablate-synthetic

install:
	@$(PYTHON) -c "import tevit_hf, pytest, ruff, skvideo" 2>/dev/null || $(PIP) install -q -e ".[dev,export]"

lint: install
	$(PYTHON) -m ruff check src tests scripts
	$(PYTHON) -m ruff format --check src tests scripts
	mlinter --rules-toml .mlinter-rules.toml src/tevit_hf

test: install lint
	$(PYTHON) -m pytest -q -x tests

demo: install
	tevit-hf demo --output-dir demo_output --overwrite

# The small model and generated data of the CPU recipes below (see README and docs/ablations.md).
SYNTHETIC_DATA = --synthetic --synthetic_num_train_videos 256 --synthetic_num_frames 8 --synthetic_height 96 \
	--synthetic_width 128 --synthetic_num_classes 3 --synthetic_max_instances 3 --synthetic_class_colours
SMALL_OVERRIDES = backbone_hidden_sizes=[16,32,64,128],backbone_num_attention_heads=[1,1,2,4],backbone_mlp_ratios=[4,4,4,4],hidden_size=64,head_ffn_dim=256,dynamic_conv_dim=16,mask_conv_dim=32,num_queries=8,num_head_stages=3,num_selected_instances=10,drop_path_rate=0.0,class_loss_weight=20.0
SMALL_MODEL = --model_name_or_path tiny --train_scales 128x96 --scale_mode value --test_size 128x96 --logging_steps 100 \
	--learning_rate 1e-3 --backbone_lr_multiplier 1.0 --max_grad_norm 1.0

# Learning check: a small TeViT from scratch on generated synthetic data, on the CPU, then the val AP (see README).
train-synthetic: install
	$(PYTHON) scripts/train.py $(SYNTHETIC_DATA) --synthetic_dir outputs/synthetic_data --synthetic_num_val_videos 32 \
		$(SMALL_MODEL) --clip_length 3 --per_device_train_batch_size 2 --num_workers 1 --num_threads 2 \
		--output_dir outputs/synthetic_model --overwrite_output_dir --config_overrides $(SMALL_OVERRIDES) \
		--max_train_steps 8400 --warmup_steps 100 --lr_drop_steps 7100 7900 --eval_steps 4200 --checkpointing_steps 2100

# The paper's ablations on the CPU (about 33 minutes, docs/ablations.md): every variant fine-tuned for 300 steps
# from one shared per-frame QueryInst initialisation (as the paper starts every variant from COCO QueryInst), two
# seeds side by side, then the tables. Re-running continues: finished steps are kept.
ABLATION_TRAIN = $(SYNTHETIC_DATA) --synthetic_dir outputs/ablation_data --synthetic_num_val_videos 16 $(SMALL_MODEL) \
	--num_workers 0 --clip_length 3 --per_device_train_batch_size 2 --num_threads 1 --init_from outputs/ablation_init \
	--config_overrides $(SMALL_OVERRIDES) --max_train_steps 300 --warmup_steps 50 --lr_drop_steps 250 --eval_steps 300 \
	--checkpointing_steps 150
ablate-synthetic: install
	test -f outputs/ablation_init/config.json || $(PYTHON) scripts/train.py $(SYNTHETIC_DATA) \
		--synthetic_dir outputs/ablation_data --synthetic_num_val_videos 16 $(SMALL_MODEL) --num_workers 0 \
		--clip_length 1 --per_device_train_batch_size 4 --num_threads 2 --output_dir outputs/ablation_init \
		--config_overrides $(SMALL_OVERRIDES),num_messenger_tokens=0,query_interaction=spatial \
		--max_train_steps 2000 --warmup_steps 100 --lr_drop_steps 1700 --eval_steps 2000 --checkpointing_steps 1000
	tevit-hf ablate --output-dir outputs/ablation_synthetic --seeds 0 -- $(ABLATION_TRAIN) & seed0=$$!; \
		tevit-hf ablate --output-dir outputs/ablation_synthetic --seeds 1 -- $(ABLATION_TRAIN); seed1=$$?; \
		wait $$seed0 && test $$seed1 = 0
	tevit-hf ablate --output-dir outputs/ablation_synthetic --seeds 0 1 -- $(ABLATION_TRAIN)
