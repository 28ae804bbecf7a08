"""Files: images in and out (:mod:`.images`), atomic writes (:mod:`.atomic`), and image
folders as one tensor (:mod:`.datasets`)."""
