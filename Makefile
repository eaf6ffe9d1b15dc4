# The two commands of the README: `make demo` runs the main job, `make test` runs every test.
SHELL := /bin/bash
.PHONY: demo test install image stack-up stack-status stack-down

install:
	@bash deploy/local/bootstrap.sh >/dev/null

demo:
	@venv=$$(bash deploy/local/bootstrap.sh) && "$$venv/bin/sail-stream" demo $(ARGS)

test:
	@venv=$$(bash deploy/local/bootstrap.sh) && "$$venv/bin/python" -m pytest --durations=15 $(ARGS)

# The project's image (deploy/image/Containerfile), built without a registry and smoke-tested; root only
image:
	@bash deploy/image/build.sh

stack-up:
	@venv=$$(bash deploy/local/bootstrap.sh) && "$$venv/bin/sail-stream" stack up

stack-status:
	@venv=$$(bash deploy/local/bootstrap.sh) && "$$venv/bin/sail-stream" stack status

stack-down:
	@venv=$$(bash deploy/local/bootstrap.sh) && "$$venv/bin/sail-stream" stack down
