PYTHON ?= python
PIP ?= $(PYTHON) -m pip

.PHONY: install test lint demo train-synthetic

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

# Learning check: a small TeViT from scratch on generated synthetic data, on the CPU, then the val AP (see README).
train-synthetic: install
	$(PYTHON) scripts/train.py --synthetic --synthetic_dir outputs/synthetic_data --synthetic_num_train_videos 256 \
		--synthetic_num_val_videos 32 --synthetic_num_frames 8 --synthetic_height 96 --synthetic_width 128 \
		--synthetic_num_classes 3 --synthetic_max_instances 3 --synthetic_class_colours --model_name_or_path tiny \
		--clip_length 3 --train_scales 128x96 --scale_mode value --test_size 128x96 --per_device_train_batch_size 2 \
		--num_workers 1 --num_threads 2 --logging_steps 100 --output_dir outputs/synthetic_model --overwrite_output_dir \
		--config_overrides backbone_hidden_sizes=[16,32,64,128],backbone_num_attention_heads=[1,1,2,4],backbone_mlp_ratios=[4,4,4,4],hidden_size=64,head_ffn_dim=256,dynamic_conv_dim=16,mask_conv_dim=32,num_queries=8,num_head_stages=3,num_selected_instances=10,drop_path_rate=0.0,class_loss_weight=20.0 \
		--learning_rate 1e-3 --backbone_lr_multiplier 1.0 --max_grad_norm 1.0 --max_train_steps 8400 --warmup_steps 100 \
		--lr_drop_steps 7100 7900 --eval_steps 4200 --checkpointing_steps 2100
